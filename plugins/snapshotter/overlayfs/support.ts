/**
 * Host checks for the overlayfs snapshotter: whether the backing filesystem of its root
 * reports file types in directory entries (d_type, which overlayfs needs for whiteouts and
 * opaque directories), whether an overlay with several lower layers can really be mounted
 * there, and which optional mount options this kernel wants.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { MNT_DETACH, mountAll, unmount, unmountAll } from '../../../core/mount/index.js';
import { openLibc } from '../../../core/sys/syscalls.js';

type Koffi = typeof import('koffi');

interface DirLib {
  koffi: Koffi;
  opendir: (path: string) => unknown;
  readdir: (dir: unknown) => unknown;
  closedir: (dir: unknown) => number;
}

let dirLib: DirLib | undefined;

function loadDirLib(): DirLib {
  if (dirLib) return dirLib;
  const { koffi, lib } = openLibc();
  dirLib = {
    koffi,
    opendir: lib.func('void *opendir(const char *name)') as DirLib['opendir'],
    readdir: lib.func('void *readdir(void *dirp)') as DirLib['readdir'],
    closedir: lib.func('int closedir(void *dirp)') as DirLib['closedir'],
  };
  return dirLib;
}

// struct dirent (glibc and musl, 64-bit): d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name.
const D_TYPE_OFFSET = 18;
const DT_UNKNOWN = 0;

/**
 * Whether directory entries under `dir` carry their file type. Node's readdir hides a
 * missing d_type by falling back to lstat, so the raw entries are read through libc.
 */
export function supportsDType(dir: string): boolean {
  const probe = join(dir, `.d_type-probe-${process.pid}`);
  writeFileSync(probe, '');
  const l = loadDirLib();
  const handle = l.opendir(dir);
  try {
    if (!handle) throw new Error(`cannot open ${dir} to check d_type support`);
    let visited = 0;
    for (let ent = l.readdir(handle); ent; ent = l.readdir(handle)) {
      visited++;
      if ((l.koffi.decode(ent, D_TYPE_OFFSET, 'uint8_t') as number) === DT_UNKNOWN) return false;
    }
    if (visited === 0) throw new Error(`did not hit any dirent during iteration ${dir}`);
    return true;
  } finally {
    if (handle) l.closedir(handle);
    rmSync(probe, { force: true });
  }
}

const PROBE_PREFIX = 'overlay-check-';

/**
 * Mounts a throw-away overlay with two lower layers, an upper and a work dir below `dir`
 * (the real configuration every snapshot with a parent uses) and unmounts it again.
 * Throws the mount error when the kernel or the backing filesystem refuses.
 */
export async function probeOverlayMount(dir: string, extraOptions: readonly string[] = []): Promise<void> {
  const td = mkdtempSync(join(dir, PROBE_PREFIX));
  try {
    for (const d of ['lower1', 'lower2', 'upper', 'work', 'merged']) mkdirSync(join(td, d));
    const merged = join(td, 'merged');
    await mountAll([{
      type: 'overlay',
      source: 'overlay',
      options: [...extraOptions, `lowerdir=${join(td, 'lower2')}:${join(td, 'lower1')}`, `upperdir=${join(td, 'upper')}`, `workdir=${join(td, 'work')}`],
    }], merged);
    await unmount(merged);
  } finally {
    // Removing the probe's six directories is a few milliseconds of file-system work; it
    // goes on in the background instead of holding up the boot. A directory a killed daemon
    // left is removed by the next probe (removeStaleProbes).
    rm(td, { recursive: true, force: true }).catch(() => undefined);
  }
}

/**
 * Removes probe directories an earlier run left below `dir` (it stopped before removing them,
 * possibly with the probe's overlay still mounted: killed between mount and unmount). In the
 * background, like the probe's own removal; a mount it cannot take off keeps its directory.
 */
export function removeStaleProbes(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(PROBE_PREFIX)) continue;
    const probe = join(dir, name);
    unmountAll(probe, MNT_DETACH)
      .then(() => rm(probe, { recursive: true, force: true }))
      .catch(() => undefined);
  }
}

/** Whether this kernel offers overlay's `index` feature (then berth mounts with index=off). */
export function supportsIndex(): boolean {
  return existsSync('/sys/module/overlay/parameters/index');
}

const TMPFS_MAGIC = 0x01021994;

/** Whether this process runs in a user namespace other than the initial one. */
export function runningInUserNS(): boolean {
  try {
    const line = readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/);
    return !(line[0] === '0' && line[1] === '0' && line[2] === '4294967295');
  } catch {
    return false;
  }
}

/**
 * overlayfs inside a user namespace (kernel 5.11+) must use "user.overlay.*" xattrs, asked
 * for with the `userxattr` option; the initial namespace and tmpfs never need it.
 */
export function needsUserXAttr(dir: string): boolean {
  if (!runningInUserNS()) return false;
  try {
    if (statfsSync(dir).type === TMPFS_MAGIC) return false;
  } catch {
    return false;
  }
  const [major = 0, minor = 0] = readFileSync('/proc/sys/kernel/osrelease', 'utf8').split('.').map((n) => parseInt(n, 10));
  return major > 5 || (major === 5 && minor >= 11);
}
