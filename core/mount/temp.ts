/**
 * Scoped mounts: mount somewhere private, run a callback against the mounted tree, and always
 * clean up. Used wherever the daemon must look inside a snapshot (diff, apply, image unpack).
 */
import { mkdir, mkdtemp, readdir, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Mount, mountAll, unmountAll } from './mount.js';

let tempMountLocation = join(tmpdir(), 'berth-mounts');

/** Changes the default base directory for temporary mounts (the daemon points it below its root). */
export function setTempMountLocation(dir: string): void {
  tempMountLocation = dir;
}

export function getTempMountLocation(): string {
  return tempMountLocation;
}

export interface TempMountOptions {
  /** Directory under which the temporary mountpoint is created; default getTempMountLocation(). */
  base?: string;
}

/**
 * Mounts `mounts` in a fresh directory, calls `fn(root)`, then unmounts everything and removes
 * the directory — on success and on failure alike.
 *
 * - If `fn` (or mounting) fails, that error is rethrown even if cleanup also fails: it is the
 *   cause the caller needs. A cleanup failure is thrown only when everything else succeeded.
 * - The directory is removed with rmdir, never recursively: if unmounting failed, a recursive
 *   delete would walk into the still-mounted snapshot and destroy its data. Then the empty
 *   directory is left behind instead.
 * - overlay's "volatile" option is dropped: the kernel refuses to reuse the upper/work dirs of
 *   a volatile mount, and a temporary mount must not break the snapshot's later real mount.
 */
export async function withTempMount<T>(
  mounts: readonly Mount[],
  fn: (root: string) => T | Promise<T>,
  options: TempMountOptions = {},
): Promise<T> {
  const base = options.base ?? tempMountLocation;
  await mkdir(base, { recursive: true, mode: 0o700 });
  const root = await mkdtemp(join(base, 'mount-'));

  let outcome: { ok: true; value: T } | { ok: false; error: unknown };
  try {
    await mountAll(removeVolatileOption(mounts), root);
    outcome = { ok: true, value: await fn(root) };
  } catch (error) {
    outcome = { ok: false, error };
  }

  let cleanupError: unknown;
  try {
    await unmountAll(root);
    await rmdir(root);
  } catch (err) {
    cleanupError = err;
  }

  if (!outcome.ok) throw outcome.error;
  if (cleanupError !== undefined) throw cleanupError;
  return outcome.value;
}

/**
 * Start-up cleanup of `base` after a crash (containerd's CleanupTempMounts): a daemon killed
 * inside withTempMount leaves its temporary mount (a snapshot's tree) mounted and its
 * directory behind. Each entry of `base` is unmounted, with anything mounted below it, and
 * removed (rmdir: never recursively, so a mount that would not go keeps its data). `report`
 * hears of every entry, with the error when it could not be cleaned.
 */
export async function cleanupTempMounts(base: string, report: (path: string, err?: Error) => void = () => undefined): Promise<void> {
  let names: string[];
  try {
    names = await readdir(base);
  } catch {
    return;
  }
  for (const name of names) {
    const dir = join(base, name);
    try {
      await unmountAll(dir);
      await rmdir(dir);
      report(dir);
    } catch (err) {
      report(dir, err as Error);
    }
  }
}

/** withTempMount over read-only versions of `mounts` (see readonlyMounts). */
export function withReadonlyTempMount<T>(
  mounts: readonly Mount[],
  fn: (root: string) => T | Promise<T>,
  options: TempMountOptions = {},
): Promise<T> {
  return withTempMount(readonlyMounts(mounts), fn, options);
}

/** Copies of the mounts without overlay's "volatile" option. */
export function removeVolatileOption(mounts: readonly Mount[]): Mount[] {
  return mounts.map((m) =>
    m.type === 'overlay' && m.options.includes('volatile')
      ? { ...m, options: m.options.filter((o) => o !== 'volatile') }
      : m,
  );
}

/**
 * Read-only copies: overlays lose upperdir/workdir and gain the upper layer as their topmost
 * lowerdir (an overlay without upperdir is read-only by construction); everything else gets
 * "ro" in place of any "rw"/"ro".
 */
export function readonlyMounts(mounts: readonly Mount[]): Mount[] {
  return mounts.map((m) => {
    if (m.type !== 'overlay') return { ...m, options: [...m.options.filter((o) => o !== 'rw' && o !== 'ro'), 'ro'] };
    const upper = m.options.find((o) => o.startsWith('upperdir='))?.slice('upperdir='.length);
    const options = m.options.filter((o) => !o.startsWith('upperdir=') && !o.startsWith('workdir='));
    return {
      ...m,
      options: upper
        ? options.map((o) => (o.startsWith('lowerdir=') ? `lowerdir=${upper}:${o.slice('lowerdir='.length)}` : o))
        : options,
    };
  });
}
