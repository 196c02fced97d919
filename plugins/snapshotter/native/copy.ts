/**
 * Full copy of a directory tree for the native snapshotter, keeping everything a layer
 * consists of: owners, permission bits (setuid/setgid/sticky included), extended attributes,
 * hard links (copied once, linked again), symlinks, device nodes, fifos and sockets, and
 * access/modification times to the nanosecond (the differ compares mtimes exactly, so a
 * rounded copy would make every file look modified).
 *
 * Speed: file contents are copied by fs.copyFile (copy_file_range in the kernel, a reflink
 * where the filesystem can clone), many at a time on libuv's thread pool; directories are
 * read asynchronously while the cheap metadata syscalls run inline.
 */
import {
  chmodSync, constants, lchownSync, linkSync, lstatSync, mkdirSync, readlinkSync, symlinkSync, type BigIntStats,
} from 'node:fs';
import { copyFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { syscallError } from '../../../core/sys/errno.js';
import { openLibc } from '../../../core/sys/syscalls.js';
import { lgetxattr, llistxattr, lsetxattr, mknod } from '../../../core/sys/fsx.js';

type Koffi = typeof import('koffi');

let utimensatFn: ((dirfd: number, path: string, times: BigInt64Array, flags: number) => number) | undefined;
let koffiRef: Koffi | undefined;

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;

/** utimensat(2) with nanosecond times on the path itself (symlinks are not followed). */
export function lutimesNs(path: string, atimeNs: bigint, mtimeNs: bigint): void {
  if (!utimensatFn) {
    const { koffi, lib } = openLibc();
    // struct timespec[2] on 64-bit Linux: { int64 tv_sec; int64 tv_nsec } × 2.
    utimensatFn = lib.func('int utimensat(int dirfd, const char *path, const int64_t *times, int flags)') as unknown as typeof utimensatFn;
    koffiRef = koffi;
  }
  const times = new BigInt64Array([atimeNs / 1_000_000_000n, atimeNs % 1_000_000_000n, mtimeNs / 1_000_000_000n, mtimeNs % 1_000_000_000n]);
  if (utimensatFn!(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW) !== 0) throw syscallError(koffiRef!.errno(), 'utimensat', path);
}

export interface CopyTreeOptions {
  /** File copies in flight at once (default 32). */
  concurrency?: number;
  /**
   * Called when an extended attribute cannot be read or written (security.* often cannot);
   * return normally to skip that attribute, throw to fail the copy. Default: skip.
   */
  onXattrError?: (path: string, name: string, err: unknown) => void;
}

/** A counting semaphore for the file copies. */
class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly max: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

/** Waits for every task, then rethrows the first failure (no task is left running). */
async function settleAll(tasks: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(tasks);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

class TreeCopier {
  private readonly limiter: Limiter;
  /** First copy of each multiply-linked inode, by inode number. */
  private readonly linked = new Map<bigint, Promise<string>>();

  constructor(private readonly opts: CopyTreeOptions) {
    this.limiter = new Limiter(opts.concurrency ?? 32);
  }

  async directory(src: string, dst: string, st: BigIntStats, exists: boolean): Promise<void> {
    // Owner-only until the final chmod: nobody else can see a half-copied directory.
    if (!exists) mkdirSync(dst, 0o700);
    const names = await readdir(src);
    const tasks: Promise<unknown>[] = [];
    for (const name of names) {
      const s = join(src, name);
      const d = join(dst, name);
      const est = lstatSync(s, { bigint: true });
      if (est.isDirectory()) tasks.push(this.directory(s, d, est, false));
      else if (est.isFile()) tasks.push(this.file(s, d, est));
      else if (est.isSymbolicLink()) {
        symlinkSync(readlinkSync(s), d);
        this.attributes(s, d, est, true);
      } else if (est.isCharacterDevice() || est.isBlockDevice() || est.isFIFO() || est.isSocket()) {
        mknod(d, Number(est.mode), est.isCharacterDevice() || est.isBlockDevice() ? est.rdev : 0n);
        this.attributes(s, d, est, false);
      }
      // Anything else (there is nothing else on Linux) is skipped, as containerd does.
    }
    await settleAll(tasks);
    // Last: creating the children changed this directory's times.
    this.attributes(src, dst, st, false);
  }

  private file(src: string, dst: string, st: BigIntStats): Promise<void> {
    if (st.nlink > 1n) {
      const first = this.linked.get(st.ino);
      if (first) return first.then((target) => linkSync(target, dst));
      const copy = this.copyContents(src, dst, st).then(() => dst);
      this.linked.set(st.ino, copy);
      return copy.then(() => undefined);
    }
    return this.copyContents(src, dst, st);
  }

  private async copyContents(src: string, dst: string, st: BigIntStats): Promise<void> {
    await this.limiter.run(() => copyFile(src, dst, constants.COPYFILE_FICLONE));
    this.attributes(src, dst, st, false);
  }

  /**
   * Owner, then mode (chown clears setuid/setgid, so mode must come after), then xattrs
   * (chown also drops security.capability), then times.
   */
  private attributes(src: string, dst: string, st: BigIntStats, symlink: boolean): void {
    const uid = Number(st.uid);
    const gid = Number(st.gid);
    try {
      lchownSync(dst, uid, gid);
    } catch (err) {
      // Some filesystems refuse even a no-op chown; only a real change matters.
      const cur = lstatSync(dst);
      if (cur.uid !== uid || cur.gid !== gid) throw err;
    }
    if (!symlink) chmodSync(dst, Number(st.mode) & 0o7777);
    this.xattrs(src, dst);
    lutimesNs(dst, st.atimeNs, st.mtimeNs);
  }

  private xattrs(src: string, dst: string): void {
    let names: string[];
    try {
      names = llistxattr(src);
    } catch (err) {
      this.xattrError(src, '', err);
      return;
    }
    for (const name of names) {
      try {
        const value = lgetxattr(src, name);
        if (value !== undefined) lsetxattr(dst, name, value);
      } catch (err) {
        this.xattrError(dst, name, err);
      }
    }
  }

  private xattrError(path: string, name: string, err: unknown): void {
    this.opts.onXattrError?.(path, name, err);
  }
}

/**
 * Copies the tree at `src` into the directory `dst` (which may exist: its own attributes are
 * replaced by those of `src`, as containerd's CopyDir does).
 */
export async function copyTree(src: string, dst: string, opts: CopyTreeOptions = {}): Promise<void> {
  const st = lstatSync(src, { bigint: true });
  if (!st.isDirectory()) throw new Error(`source ${src} is not directory`);
  let exists = false;
  try {
    exists = lstatSync(dst).isDirectory();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await new TreeCopier(opts).directory(src, dst, st, exists);
}
