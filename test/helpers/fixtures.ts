/**
 * Fixtures shared by the integration tests: a busybox root filesystem built from the host's
 * busybox-static (for `ctr run --rootfs`), and polling for a condition with a deadline.
 */
import { copyFileSync, mkdirSync, mkdtempSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const BUSYBOX_APPLETS = ['sh', 'echo', 'true', 'false', 'sleep', 'cat', 'hostname', 'ls', 'id', 'env'];

/** A fresh directory holding /bin/busybox, its applet links and the usual mount points. */
export function busyboxRootfs(applets: readonly string[] = BUSYBOX_APPLETS): string {
  const dir = mkdtempSync(join(tmpdir(), 'berth-bb-'));
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
