/**
 * The local writer on a file system that fills up (a 1 MiB tmpfs): a write that fails
 * part-way is reported by that write, and leaves the file, the offset and the digest where
 * it began, so the ingest goes on from there; a commit never publishes a short blob.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalContentStore } from '../../../../plugins/content/local/store.js';

const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const ctx = {};

describe('content writes on a full file system', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-diskfull-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0755', 'tmpfs', dir]);
  });
  after(() => {
    spawnSync('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
  });

  test('each write is in the file when it returns; the blob is whole once committed', async () => {
    const store = await LocalContentStore.open(join(dir, 'ok'));
    const parts = [randomBytes(100_000), randomBytes(70_000), randomBytes(30_000)];
    const all = Buffer.concat(parts);
    const w = await store.writer(ctx, { ref: 'ok' });
    const ingest = join(dir, 'ok', 'ingest', readdirSync(join(dir, 'ok', 'ingest'))[0]!, 'data');
    let written = 0;
    for (const p of parts) {
      await w.write(p);
      written += p.length;
      assert.equal(statSync(ingest).size, written, 'in the file before the answer');
    }
    assert.equal(w.status().offset, all.length);
    assert.equal(await w.digest(), sha(all));
    await w.commit(all.length, sha(all));
    const r = await store.read(ctx, sha(all));
    const got: Buffer[] = [];
    for await (const c of r) got.push(c as Buffer);
    assert.ok(Buffer.concat(got).equals(all));
    await store.delete(ctx, sha(all));
  });

  test('a write that fails part-way fails itself; file, offset and digest go back, and the ingest goes on', async () => {
    const store = await LocalContentStore.open(join(dir, 'full'));
    const first = randomBytes(200_000);
    const w = await store.writer(ctx, { ref: 'full' });
    await w.write(first);
    // More than the file system has left: some of it is written before the disk is full.
    await assert.rejects(w.write(randomBytes(2 << 20)), /no space left on device/i);
    assert.equal(w.status().offset, first.length, 'back at the start of the failed write');
    assert.equal(await w.digest(), sha(first));
    const ingest = join(dir, 'full', 'ingest', readdirSync(join(dir, 'full', 'ingest'))[0]!, 'data');
    assert.equal(statSync(ingest).size, first.length, 'no bytes past the offset');
    const rest = randomBytes(50_000);
    await w.write(rest);
    const all = Buffer.concat([first, rest]);
    await w.commit(all.length, sha(all));
    await store.delete(ctx, sha(all));
  });
});
