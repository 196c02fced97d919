/**
 * Fixtures shared by the integration tests: a busybox root filesystem built from the host's
 * busybox-static (for `ctr run --rootfs`), a busybox image archive, and polling for a
 * condition with a deadline.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, symlinkSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './tmp.js';

/** The name the busybox image archive carries (what `ctr images import` tags). */
export const BUSYBOX = 'docker.io/library/busybox:latest';

/** Writes an archive (OCI by default, or Docker's) of the busybox image to `out` (scripts/make-image.mjs). */
export function makeBusyboxArchive(out: string, format: 'oci' | 'docker' = 'oci'): string {
  const script = resolve(dirname(fileURLToPath(import.meta.url)), '../../scripts/make-image.mjs');
  execFileSync(process.execPath, [script, '--out', out, '--name', BUSYBOX, '--format', format]);
  return out;
}

export const BUSYBOX_APPLETS = ['sh', 'echo', 'true', 'false', 'sleep', 'cat', 'hostname', 'ls', 'id', 'env'];

/** A fresh directory holding /bin/busybox, its applet links and the usual mount points. */
export function busyboxRootfs(applets: readonly string[] = BUSYBOX_APPLETS): string {
  const dir = tempDir('berth-bb-');
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'run']) mkdirSync(join(dir, d));
  copyFileSync('/usr/bin/busybox', join(dir, 'bin', 'busybox'));
  for (const a of applets) symlinkSync('busybox', join(dir, 'bin', a));
  return dir;
}

/** Polls `fn` every 50 ms until it returns a value other than undefined; fails naming `what`. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
