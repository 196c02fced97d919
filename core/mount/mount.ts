/**
 * Performing containerd-style mounts. A Mount is "a serialized mount syscall" exactly as
 * snapshotters return it ({type, source, options}); this module turns it into the sequence of
 * mount(2) calls Linux actually needs, and undoes it again.
 */
import { closeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { InvalidArgumentError } from '../errdefs/errdefs.js';
import { hasErrnoCode } from '../sys/errno.js';
import * as sys from '../sys/syscalls.js';
import { MNT_DETACH, MS_BIND, MS_PER_MOUNT, MS_RDONLY, MS_REMOUNT } from './flags.js';
import { setupLoop, type LoopDevice } from './loop.js';
import { mountInDirectory } from './mountat.js';
import { mountInfo, resolvedPath } from './mountinfo.js';
import { compactLowerdirOption, optionsSize, parseMountOptions } from './options.js';
import { type Mount, mountpointOf } from './types.js';

// Convenience re-exports; core/mount/index.ts is the full public surface.
export { type Mount, mountpointOf } from './types.js';
export { parseMountOptions, type ParsedMountOptions } from './options.js';
export { fsTypeOf, isMountPoint, lookupMount, mountInfo, parseMountInfo, type MountInfo } from './mountinfo.js';

/** mount(2) copies at most one page of data; containerd keeps 512 bytes of headroom before compacting. */
const COMPACT_HEADROOM = 512;

/**
 * Performs one mount at `root` (or at root/m.target):
 * 1. the main mount(2) — via a loop device for "loop", via a child process with a chosen cwd
 *    for overlays whose lowerdir list was compacted to relative paths;
 * 2. for binds, a MS_REMOUNT|MS_BIND call, because a new bind mount ignores ro/nosuid/nodev/
 *    noexec/atime flags (containerd only does this for ro; berth applies all of them);
 * 3. the propagation change, which the kernel only accepts as its own call.
 * If step 2 or 3 fails the mount from step 1 is undone, so a requested-ro bind never stays rw.
 */
export async function mountOne(m: Mount, root: string): Promise<void> {
  const target = mountpointOf(m, root);
  let options = m.options;
  let chdir: string | undefined;
  if (m.type === 'overlay' && optionsSize(options) >= sys.pageSize() - COMPACT_HEADROOM) {
    ({ chdir, options } = compactLowerdirOption(options));
  }
  const { flags, propagationFlags, data, loopSetup } = parseMountOptions(options);
  const dataString = data.join(',');
  if (Buffer.byteLength(dataString) > sys.pageSize()) {
    throw new InvalidArgumentError(`mount options for ${target} are too long (${Buffer.byteLength(dataString)} bytes)`);
  }

  if (flags & MS_REMOUNT) {
    // Changes an existing mount: one call, the kernel ignores source and type.
    sys.mount(m.source || null, target, m.type || null, flags, dataString || null);
  } else {
    await initialMount(m, target, flags, dataString, loopSetup === true, chdir);
  }
  try {
    if (flags & MS_BIND && flags & MS_PER_MOUNT && !(flags & MS_REMOUNT)) {
      sys.mount(null, target, null, flags | MS_REMOUNT, null);
    }
    if (propagationFlags) sys.mount(null, target, null, propagationFlags, null);
  } catch (err) {
    if (!(flags & MS_REMOUNT)) detachQuietly(target);
    throw err;
  }
}

async function initialMount(
  m: Mount,
  target: string,
  flags: number,
  data: string,
  loop: boolean,
  chdir: string | undefined,
): Promise<void> {
  let device: LoopDevice | undefined;
  if (loop) device = setupLoop(m.source, { readonly: (flags & MS_RDONLY) !== 0, autoclear: true });
  try {
    const source = device?.path ?? m.source;
    if (chdir) await mountInDirectory(chdir, source, target, m.type, flags, data);
    else sys.mount(source, target, m.type || null, flags, data || null);
  } finally {
    // With autoclear the kernel detaches the device when this last fd closes and it is not mounted.
    if (device) closeSync(device.fd);
  }
}

/**
 * Mounts every entry in order (later ones stack on, or below, earlier ones). On failure the
 * mounts already made are undone before the error is rethrown, so callers never inherit a
 * half-built rootfs.
 */
export async function mountAll(mounts: readonly Mount[], target: string): Promise<void> {
  const done: string[] = [];
  try {
    for (const m of mounts) {
      await mountOne(m, target);
      done.push(mountpointOf(m, target));
    }
  } catch (err) {
    for (const mountpoint of done.reverse()) detachQuietly(mountpoint);
    throw err;
  }
}

const EBUSY_ATTEMPTS = 8;
const EBUSY_FIRST_DELAY_MS = 10;
const EBUSY_MAX_DELAY_MS = 200;

/**
 * Unmounts the topmost mount at `target`. EBUSY (a process briefly holding a file open, e.g. a
 * just-exited container) is retried with a short exponential backoff. EINVAL — `target` is
 * not a mount point — is not an error, matching containerd's mount.Unmount.
 */
export async function unmount(target: string, flags = 0): Promise<void> {
  await unmountOnce(target, flags);
}

/** true: something was unmounted; false: nothing was mounted there (EINVAL). */
async function unmountOnce(target: string, flags: number): Promise<boolean> {
  let delay = EBUSY_FIRST_DELAY_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      sys.umount2(target, flags);
      return true;
    } catch (err) {
      if (hasErrnoCode(err, 'EINVAL')) return false;
      if (!hasErrnoCode(err, 'EBUSY') || attempt >= EBUSY_ATTEMPTS) throw err;
    }
    await sleep(delay);
    delay = Math.min(delay * 2, EBUSY_MAX_DELAY_MS);
  }
}

/**
 * Unmounts everything at `target` until it is no longer a mount point, including mounts nested
 * below it (an rbind brings its submounts along, and the kernel refuses — EBUSY — to unmount
 * a mount that still has children). A missing or empty `target` is a no-op.
 */
export async function unmountAll(target: string, flags = 0): Promise<void> {
  if (!target) return;
  let root: string;
  try {
    root = resolvedPath(target);
  } catch (err) {
    if (hasErrnoCode(err, 'ENOENT')) return;
    throw err;
  }
  if (root === '/') throw new InvalidArgumentError('refusing to unmount everything below /');
  for (;;) {
    const nested = (await mountInfo()).filter((m) => m.mountpoint.startsWith(root + '/'));
    // Later entries are newer and possibly children of earlier ones: undo them first.
    for (const m of nested.reverse()) await unmountOnce(m.mountpoint, flags);
    if (!(await unmountOnce(root, flags))) return;
  }
}

/**
 * Rollback of a mount we just made: MNT_DETACH takes off exactly the topmost mount at `target`
 * together with its submounts (an rbind's), leaving whatever was mounted there before intact.
 */
function detachQuietly(target: string): void {
  try {
    sys.umount2(target, MNT_DETACH);
  } catch {
    // best effort while already reporting another error
  }
}
