/**
 * The running digest of an ingest (plugins/content/local/digest.ts) on real files: it follows
 * the writes, starts over after a truncate, is rebuilt from the file on resume, and a restart
 * after a failed write hashes only what the file really holds.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RunningDigest } from '../../../../plugins/content/local/digest.js';
import { tempDir } from '../../../helpers/tmp.js';

const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Appends `data` to `file` in `chunk`-sized writes, telling `d` about each one. */
function writeThrough(d: RunningDigest, file: string, data: Buffer, from: number, chunk = 1 << 20): void {
  for (let at = 0; at < data.length; at += chunk) {
    const part = data.subarray(at, at + chunk);
    d.written(part, from + at);
    appendFileSync(file, part);
  }
}

describe('running ingest digest', () => {
  const dir = tempDir('berth-digest-');

  test('follows the writes, chunk by chunk', async () => {
    const file = join(dir, 'grow');
    writeFileSync(file, '');
    const data = randomBytes(9 * (1 << 20) + 123);
    const d = new RunningDigest(file);
    assert.equal(await d.digest(), sha(Buffer.alloc(0)));
    const half = 4 << 20;
    writeThrough(d, file, data.subarray(0, half), 0);
    assert.equal(await d.digest(), sha(data.subarray(0, half)));
    writeThrough(d, file, data.subarray(half), half, 3 << 19);
    assert.equal(await d.digest(), sha(data));
    // Asking twice changes nothing.
    assert.equal(await d.digest(), sha(data));
  });

  test('a restart from 0 hashes only what is written after it', async () => {
    const file = join(dir, 'restart');
    writeFileSync(file, '');
    const first = randomBytes(5 << 20);
    const d = new RunningDigest(file);
    writeThrough(d, file, first, 0);
    assert.equal(await d.digest(), sha(first));
    truncateSync(file, 0);
    await d.restart(0);
    const second = randomBytes(3 << 20);
    writeThrough(d, file, second, 0);
    assert.equal(await d.digest(), sha(second));
  });

  test('a resumed ingest is rehashed from its file', async () => {
    for (const size of [1000, (6 << 20) + 99]) {
      const file = join(dir, `resume-${size}`);
      const data = randomBytes(size);
      writeFileSync(file, data);
      const d = await RunningDigest.resume(file, size);
      assert.equal(await d.digest(), sha(data));
      const more = randomBytes(5000);
      writeThrough(d, file, more, size);
      assert.equal(await d.digest(), sha(Buffer.concat([data, more])));
    }
  });

  test('after a write that never landed, a restart goes back to what the file holds', async () => {
    const file = join(dir, 'short');
    const data = randomBytes(1 << 20);
    writeFileSync(file, data);
    const d = await RunningDigest.resume(file, data.length);
    d.written(Buffer.alloc(100), data.length); // hashed, then the write failed
    await d.restart(data.length);
    assert.equal(await d.digest(), sha(data));
    // A restart past the end of the file fails, naming it, and leaves no digest to give.
    await assert.rejects(d.restart(data.length + 100), new RegExp(`${file} holds ${data.length} bytes, expected ${data.length + 100}`));
    await assert.rejects(d.digest(), /not available/);
  });

  test('a write reported out of order is refused', () => {
    const d = new RunningDigest(join(dir, 'order'));
    assert.throws(() => d.written(Buffer.alloc(1), 5), /write at 5 after 0 bytes/);
  });
});
