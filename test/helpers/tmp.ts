/**
 * Temporary directories for tests, removed when the test process exits (each test file runs
 * in its own process), so a test run leaves nothing in /tmp. A directory with something still
 * mounted below it is left alone: a recursive removal would reach into the mount.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMountInfo } from '../../core/mount/mountinfo.js';

const made: string[] = [];

/** A new directory under the system's temporary directory, named `<prefix>XXXXXX`. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (made.length === 0) process.once('exit', removeAll);
  made.push(dir);
  return dir;
}

function mountPoints(): string[] {
  try {
    // Synchronously: this runs in the process's exit handler.
    return parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8')).map((m) => m.mountpoint);
  } catch {
    return [];
  }
}

function removeAll(): void {
  const mounts = mountPoints();
  for (const dir of made) {
    if (mounts.some((m) => m === dir || m.startsWith(`${dir}/`))) continue;
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch { /* best effort at exit */ }
  }
}
