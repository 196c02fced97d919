/**
 * Filesystem calls Node does not offer: mknod(2) (device nodes, fifos and overlay whiteouts),
 * the l*xattr(2) family (extended attributes on a path without following a final symlink) and
 * the inode flag that spreads a directory's subdirectories over the disk.
 *
 * They go through koffi against libc. Neither koffi nor libc is loaded when this module is
 * imported; the first call loads both. The calls are synchronous: each is a single quick
 * syscall, and errno can only be read reliably on the thread that made the call.
 *
 * Failures throw Node-style errors (see errno.ts): `code` such as 'ENODATA', negative `errno`,
 * `syscall` and `path`, the same shape fs.* errors have.
 */
import { closeSync, constants as fsConstants, openSync } from 'node:fs';
import { syscallError } from './errno.js';
import { ioctl, openLibc } from './syscalls.js';

type Koffi = typeof import('koffi');
type Fn = (...args: unknown[]) => number;

interface FsxLib {
  koffi: Koffi;
  mknod: (path: string, mode: number, dev: bigint) => number;
  lsetxattr: Fn;
  lgetxattr: Fn;
  llistxattr: Fn;
  lremovexattr: Fn;
}

let lib: FsxLib | undefined;

function libc(): FsxLib {
  if (lib) return lib;
  const { koffi, lib: h } = openLibc();
  const fn = (decl: string) => h.func(decl) as unknown as Fn;

  // glibc >= 2.33 and musl export mknod; older glibc only has the versioned __xmknod
  // (version 0 on every 64-bit Linux ABI), which takes the device number by pointer.
  let mknod: FsxLib['mknod'];
  try {
    const f = fn('int mknod(const char *path, uint32_t mode, uint64_t dev)');
    mknod = (path, mode, dev) => f(path, mode, dev);
  } catch {
    const f = fn('int __xmknod(int ver, const char *path, uint32_t mode, _Inout_ uint64_t *dev)');
    mknod = (path, mode, dev) => f(0, path, mode, [dev]);
  }

  lib = {
    koffi,
    mknod,
    lsetxattr: fn('int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)'),
    lgetxattr: fn('long lgetxattr(const char *path, const char *name, _Out_ void *value, size_t size)'),
    llistxattr: fn('long llistxattr(const char *path, _Out_ void *list, size_t size)'),
    lremovexattr: fn('int lremovexattr(const char *path, const char *name)'),
  };
  return lib;
}

function fail(l: FsxLib, syscall: string, path: string, detail?: string): never {
  throw syscallError(l.koffi.errno(), syscall, path, detail);
}

/** File-type bits of st_mode, for mknod's `mode` argument. */
export const S_IFMT = 0o170000;
export const S_IFIFO = 0o010000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFREG = 0o100000;

/** lsetxattr flags. */
export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;

/** The kernel's dev_t from a major/minor pair (glibc's makedev). */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major >>> 0);
  const mi = BigInt(minor >>> 0);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn);
}

/** Major number of a dev_t (as found in fs.Stats.rdev). */
export function major(dev: number | bigint): number {
  const d = BigInt(dev);
  return Number(((d >> 32n) & 0xfffff000n) | ((d >> 8n) & 0xfffn));
}

/** Minor number of a dev_t. */
export function minor(dev: number | bigint): number {
  const d = BigInt(dev);
  return Number(((d >> 12n) & 0xffffff00n) | (d & 0xffn));
}

/**
 * mknod(2): creates a device node, fifo or regular file at `path`. `mode` carries both the
 * S_IF* type and the permission bits (the process umask applies to the latter); `dev` is a
 * dev_t as built by makedev (ignored by the kernel for fifos and regular files).
 */
export function mknod(path: string, mode: number, dev: number | bigint = 0): void {
  const l = libc();
  if (l.mknod(path, mode >>> 0, BigInt(dev)) !== 0) fail(l, 'mknod', path);
}

/** lsetxattr(2): sets `name` on `path` itself (a final symlink is not followed). */
export function lsetxattr(path: string, name: string, value: Uint8Array | string, flags = 0): void {
  const l = libc();
  const buf = typeof value === 'string' ? Buffer.from(value) : value;
  if (l.lsetxattr(path, name, buf, buf.byteLength, flags) !== 0) fail(l, 'lsetxattr', path, name);
}

/**
 * lgetxattr(2): the value of `name` on `path`, or undefined when the attribute is not set
 * (ENODATA). Other failures (ENOTSUP on filesystems without xattrs, ENOENT, ...) throw.
 */
export function lgetxattr(path: string, name: string): Buffer | undefined {
  const l = libc();
  // A guess that fits nearly every attribute saves the size probe; ERANGE means it changed
  // (or was bigger) and the probe tells the real size.
  let size = 256;
  for (let attempt = 0; attempt < 8; attempt++) {
    const buf = Buffer.allocUnsafe(size);
    const n = l.lgetxattr(path, name, buf, size);
    if (n >= 0) return Buffer.from(buf.subarray(0, n));
    const errno = l.koffi.errno();
    if (errno === ENODATA) return undefined;
    if (errno !== ERANGE) throw syscallError(errno, 'lgetxattr', path, name);
    const probe = l.lgetxattr(path, name, null, 0);
    if (probe < 0) {
      const e = l.koffi.errno();
      if (e === ENODATA) return undefined;
      throw syscallError(e, 'lgetxattr', path, name);
    }
    size = Math.max(probe, 1);
  }
  throw syscallError(ERANGE, 'lgetxattr', path, name);
}

/** llistxattr(2): names of all extended attributes on `path` (the caller may not read all of them). */
export function llistxattr(path: string): string[] {
  const l = libc();
  let size = 1024;
  for (let attempt = 0; attempt < 8; attempt++) {
    const buf = Buffer.allocUnsafe(size);
    const n = l.llistxattr(path, buf, size);
    if (n >= 0) {
      const names: string[] = [];
      let start = 0;
      for (let i = 0; i < n; i++) {
        if (buf[i] === 0) {
          if (i > start) names.push(buf.toString('utf8', start, i));
          start = i + 1;
        }
      }
      return names;
    }
    const errno = l.koffi.errno();
    if (errno !== ERANGE) throw syscallError(errno, 'llistxattr', path);
    const probe = l.llistxattr(path, null, 0);
    if (probe < 0) fail(l, 'llistxattr', path);
    size = Math.max(probe, 1);
  }
  throw syscallError(ERANGE, 'llistxattr', path);
}

/** lremovexattr(2): removes `name` from `path`; throws ENODATA when it is not set. */
export function lremovexattr(path: string, name: string): void {
  const l = libc();
  if (l.lremovexattr(path, name) !== 0) fail(l, 'lremovexattr', path, name);
}

// Linux errno values (identical on every architecture Node runs on).
const ENODATA = 61;
const ERANGE = 34;

// FS_IOC_GETFLAGS / FS_IOC_SETFLAGS (_IOR/_IOW('f', 1/2, long)); the kernel reads and writes an int.
const FS_IOC_GETFLAGS = 0x80086601;
const FS_IOC_SETFLAGS = 0x40086602;
const FS_TOPDIR_FL = 0x00020000;

/**
 * Asks the filesystem to place each new subdirectory of `dir` as it would a top-level one:
 * spread over the block groups with the most room, rather than next to its siblings (ext2/3/4's
 * Orlov allocator; other filesystems ignore the flag or do not have it).
 *
 * Why: an ext4 without a journal skips, for every inode it allocates, each free inode of the
 * group that was freed in the last minute or more (`recently_deleted` in fs/ext4/ialloc.c).
 * Unpacking a layer next to the one just removed then scanned thousands of such inodes per
 * file created, growing with every pull/remove cycle (a 9,000-file layer: 1.1 s, then 1.7, 2.5,
 * 3.1 s); in a group of its own each file takes the first free inode.
 *
 * Best effort: false where the flag cannot be set (not supported, not permitted).
 */
export function spreadNewSubdirectories(dir: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(dir, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
    const flags = Buffer.alloc(8);
    ioctl(fd, FS_IOC_GETFLAGS, flags, dir);
    const current = flags.readInt32LE(0);
    if (current & FS_TOPDIR_FL) return true;
    flags.writeInt32LE(current | FS_TOPDIR_FL, 0);
    ioctl(fd, FS_IOC_SETFLAGS, flags, dir);
    return true;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
