/**
 * Pieces the built-in snapshotters share: the platform they report, path helpers and the
 * removal of directories that no storage record owns any more.
 */
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { InvalidArgumentError } from '../../core/errdefs/errdefs.js';
import type { Logger } from '../../core/log/logger.js';
import { canonicalPath, mountInfo, type MountInfo } from '../../core/mount/mountinfo.js';
import type { Platform } from '../../core/plugin/types.js';
import { removeTreeSync } from '../../core/sys/remove-tree.js';

const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

/** The host platform in OCI terms (what containerd's platforms.DefaultSpec() reports). */
export function hostPlatform(): Platform {
  return { os: 'linux', architecture: GOARCH[process.arch] ?? process.arch, variant: process.arch === 'arm' ? 'v7' : '' };
}

/**
 * Deletes directories in the background-friendly way snapshotters need: failures are logged
 * rather than thrown (the next cleanup finds them again). Big trees go to an `rm -rf`
 * child process: tens of thousands of unlinks on libuv's small thread pool would stall every
 * other file operation of the daemon (blob writes, extraction) until they finish.
 * `--one-file-system` keeps it from descending into anything still mounted below.
 */
export async function removeDirectories(paths: readonly string[], log?: Logger): Promise<void> {
  if (!paths.length) return;
  // A container's writable layer is usually a handful of entries: removing those here costs
  // less than forking the daemon for `rm` (a few milliseconds of CPU per removal), and doing
  // it synchronously less than a thread-pool round trip per entry. Requests that arrive in
  // the meantime go between two trees (each ~0.5 ms of file-system calls on ext4), not after
  // all of them: a collection after twenty removals would otherwise hold the next Prepare.
  if (await smallUnmountedTrees(paths)) {
    try {
      for (let i = 0; i < paths.length; i++) {
        if (i > 0) await new Promise((resolve) => setImmediate(resolve));
        removeTreeSync(paths[i]!);
      }
      return;
    } catch (err) {
      log?.debug('in-process removal failed; using rm -rf', { error: (err as Error).message });
    }
  }
  try {
    await new Promise<void>((resolve, reject) => {
      execFile('rm', ['-rf', '--one-file-system', '--', ...paths], (err, _out, stderr) =>
        err ? reject(new Error(stderr.trim() || err.message)) : resolve());
    });
  } catch (err) {
    log?.warn('rm -rf failed; retrying in process', { error: (err as Error).message });
    await Promise.all(paths.map(async (p) => {
      try {
        await rm(p, { recursive: true, force: true, maxRetries: 2 });
      } catch (e) {
        log?.warn('failed to remove directory', { path: p, error: (e as Error).message });
      }
    }));
  }
}

/** Trees of at most this many entries in all are removed in process. */
const SMALL_TREE_ENTRIES = 64;

/**
 * Whether `paths` together hold at most SMALL_TREE_ENTRIES entries (counted without following
 * links, stopping as soon as there are more) and nothing is mounted at or below any of them
 * (the in-process removal, unlike `rm --one-file-system`, would descend into a mount).
 */
async function smallUnmountedTrees(paths: readonly string[]): Promise<boolean> {
  let budget = SMALL_TREE_ENTRIES;
  const pending = [...paths];
  while (pending.length) {
    const dir = pending.pop()!;
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      continue; // gone already, or not a directory: rm handles both
    }
    budget -= entries.length;
    if (budget < 0) return false;
    for (const e of entries) if (e.isDirectory()) pending.push(join(dir, e.name));
  }
  // Mount points are real paths.
  const real = paths.map(canonicalPath);
  let mounts: MountInfo[];
  try {
    mounts = await mountInfo();
  } catch {
    return false;
  }
  return !mounts.some((m) => real.some((p) => m.mountpoint === p || m.mountpoint.startsWith(`${p}/`)));
}

/** Validates an optional list-of-strings config value. */
export function checkStringList(name: string, value: unknown): void {
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
    throw new InvalidArgumentError(`${name}: expected a list of strings`);
  }
}

/**
 * Validates a snapshotter's `root_path`: empty (the plugin's own directory under the daemon's
 * root) or absolute. Its paths go into the mounts handed to shims and clients, which resolve
 * them from other working directories.
 */
export function checkRootPath(value: string): void {
  if (value && !isAbsolute(value)) throw new InvalidArgumentError(`root_path: expected an absolute directory, got ${JSON.stringify(value)}`);
}
