/**
 * Pieces the built-in snapshotters share: the platform they report, path helpers and the
 * removal of directories that no storage record owns any more.
 */
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { InvalidArgumentError } from '../../core/errdefs/errdefs.js';
import type { Logger } from '../../core/log/logger.js';
import type { Platform } from '../../core/plugin/types.js';

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

/** Validates an optional list-of-strings config value. */
export function checkStringList(name: string, value: unknown): void {
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
    throw new InvalidArgumentError(`${name}: expected a list of strings`);
  }
}
