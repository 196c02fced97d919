/**
 * The launcher's code cache (cmd/launcher.ts) across a daemon that sets its V8 flags once it is
 * up (core/sys/v8flags.ts): V8 takes a cache only under the flags it was made with, so the
 * cache must be written before those flags change. Written later, every boot would reject the
 * cache and write a new one. Runs the built daemon from a copy of dist/ without a cache.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Boots the daemon of `dist` on a fresh root, waits for its socket (and `then`), stops it. */
async function bootOnce(dist: string, base: string, name: string, then: () => boolean = () => true): Promise<void> {
  const sock = join(base, `${name}.sock`);
  const child = spawn(process.execPath, [join(dist, 'berthd.js'), '--root', join(base, `${name}-root`), '--state', join(base, `${name}-state`), '--address', sock],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, BERTH_CODE_CACHE: '' } });
  let stderr = '';
  child.stderr.on('data', (b) => (stderr += b));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    await until(() => existsSync(sock) || child.exitCode !== null, 'the daemon socket');
    assert.ok(existsSync(sock), `berthd exited before listening: ${stderr}`);
    await until(then, 'the code cache');
  } finally {
    child.kill('SIGTERM');
  }
  assert.equal(await exited, 0, stderr);
}

describe('launcher code cache', () => {
  // Inside the repository, so that the copy resolves node_modules as dist/ does.
  mkdirSync(join(REPO, '.scratch'), { recursive: true });
  const copy = mkdtempSync(join(REPO, '.scratch', 'launcher-'));
  const base = mkdtempSync(join(tmpdir(), 'berth-launcher-'));
  after(() => {
    rmSync(copy, { recursive: true, force: true });
    rmSync(base, { recursive: true, force: true });
  });

  it('is written by the first boot and taken, unchanged, by the next', async () => {
    const dist = join(copy, 'dist');
    mkdirSync(dist);
    for (const f of ['berthd.js', 'berthd.cjs', 'launcher.js', 'package.json']) copyFileSync(join(REPO, 'dist', f), join(dist, f));
    const cacheDir = join(dist, 'cache');
    const caches = () => (existsSync(cacheDir) ? readdirSync(cacheDir).filter((f) => f.endsWith('.v8')) : []);

    await bootOnce(dist, base, 'first', () => caches().length > 0);
    assert.equal(caches().length, 1, `one cache file: ${caches().join(', ')}`);
    const file = join(cacheDir, caches()[0]!);
    const before = statSync(file);

    await bootOnce(dist, base, 'second');
    const afterBoot = statSync(file);
    assert.deepEqual(caches(), [caches()[0]]);
    assert.equal(afterBoot.ino, before.ino, 'the second boot rewrote the cache: the first was rejected');
    assert.equal(afterBoot.mtimeMs, before.mtimeMs);
  });
});
