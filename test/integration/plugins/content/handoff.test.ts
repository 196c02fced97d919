/**
 * The local writer's hand-off writes (what Content.Write uses) on a real file system: the
 * answer comes before the bytes are in the file, the next call waits for them, and a write
 * that fails there (a 1 MiB tmpfs filling up) is reported by that next call, with the offset
 * and the digest back where the failed write began.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalContentStore } from '../../../../plugins/content/local/store.js';

const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const ctx = {};

describe('hand-off writes', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-handoff-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0755', 'tmpfs', dir]);
  });
  after(() => {
    spawnSync('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
  });

  test('the blob is whole once committed, though each write returned before landing', async () => {
    const store = await LocalContentStore.open(join(dir, 'ok'));
    const parts = [randomBytes(100_000), randomBytes(70_000), randomBytes(30_000)];
    const all = Buffer.concat(parts);
    const w = await store.writer(ctx, { ref: 'ok' });
    for (const p of parts) await w.write(p, true);
    assert.equal(w.status().offset, all.length);
    assert.equal(await w.digest(), sha(all));
    await w.commit(all.length, sha(all));
    const r = await store.read(ctx, sha(all));
    const got: Buffer[] = [];
    for await (const c of r) got.push(c as Buffer);
    assert.ok(Buffer.concat(got).equals(all));
    await store.delete(ctx, sha(all));
  });

  test('a write that fails after its answer is reported by the next call; offset and digest go back', async () => {
    const store = await LocalContentStore.open(join(dir, 'full'));
    const first = randomBytes(200_000);
    const w = await store.writer(ctx, { ref: 'full' });
    await w.write(first, true);
    // More than the file system has left: the thread pool's write fails after write() returned.
    await w.write(randomBytes(2 << 20), true);
    await assert.rejects(w.write(randomBytes(10), true), /no space left on device/i);
    assert.equal(w.status().offset, first.length, 'back at the start of the failed write');
    assert.equal(await w.digest(), sha(first));
    // The ingest goes on from there once the bytes fit.
    const rest = randomBytes(50_000);
    await w.write(rest, true);
    const all = Buffer.concat([first, rest]);
    await w.commit(all.length, sha(all));
    await store.delete(ctx, sha(all));
  });

  test('commit reports a failed hand-off write and commits nothing', async () => {
    const store = await LocalContentStore.open(join(dir, 'commit'));
    const w = await store.writer(ctx, { ref: 'commit' });
    const big = randomBytes(2 << 20);
    await w.write(big, true);
    await assert.rejects(w.commit(big.length, sha(big)), /no space left on device/i);
    await assert.rejects(store.info(ctx, sha(big)), /not found/);
  });
});
