/**
 * The running digest of an ingest (plugins/content/local/digest.ts) on real files: in place
 * for small ingests, on the worker thread past WORKER_MIN_BYTES, across restarts, resumes
 * and a worker that finds the file shorter than it was told.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RunningDigest, WORKER_MIN_BYTES } from '../../../../plugins/content/local/digest.js';
import { tempDir } from '../../../helpers/tmp.js';

const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Appends `data` to `file` in `chunk`-sized writes, telling `d` after each one lands. */
function writeThrough(d: RunningDigest, file: string, data: Buffer, from: number, chunk = 1 << 20): void {
  for (let at = 0; at < data.length; at += chunk) {
    const part = data.subarray(at, at + chunk);
    appendFileSync(file, part);
    d.written(part, from + at);
  }
}

describe('running ingest digest', () => {
  const dir = tempDir('berth-digest-');
  // The fallback would hide a broken worker: these tests insist it never ran.
  const noFallback = { onWorkerFailure: (err: Error) => assert.fail(`the worker failed: ${err.message}`) };

  for (const useWorker of [true, false]) {
    test(`follows the writes across the worker threshold (useWorker: ${useWorker})`, async () => {
      const file = join(dir, `grow-${useWorker}`);
      writeFileSync(file, '');
      const data = randomBytes(2 * WORKER_MIN_BYTES + 123);
      const d = new RunningDigest(file, { ...noFallback, useWorker });
      assert.equal(await d.digest(), sha(Buffer.alloc(0)));
      const half = WORKER_MIN_BYTES - 7;
      writeThrough(d, file, data.subarray(0, half), 0);
      assert.equal(await d.digest(), sha(data.subarray(0, half)));
      writeThrough(d, file, data.subarray(half), half, 3 << 19);
      assert.equal(await d.digest(), sha(data));
      // Asking twice changes nothing.
      assert.equal(await d.digest(), sha(data));
      d.close();
    });
  }

  test('a restart from 0 on the worker hashes only what is written after it', async () => {
    const file = join(dir, 'restart');
    writeFileSync(file, '');
    const first = randomBytes(WORKER_MIN_BYTES + 10);
    const d = new RunningDigest(file, noFallback);
    writeThrough(d, file, first, 0);
    assert.equal(await d.digest(), sha(first));
    truncateSync(file, 0);
    await d.restart(0);
    const second = randomBytes(WORKER_MIN_BYTES + (1 << 20));
    writeThrough(d, file, second, 0);
    assert.equal(await d.digest(), sha(second));
    d.close();
  });

  test('a resumed ingest is rehashed from its file, big ones on the worker', async () => {
    for (const size of [1000, WORKER_MIN_BYTES + 99]) {
      const file = join(dir, `resume-${size}`);
      const data = randomBytes(size);
      writeFileSync(file, data);
      const d = await RunningDigest.resume(file, size, noFallback);
      assert.equal(await d.digest(), sha(data));
      const more = randomBytes(5000);
      writeThrough(d, file, more, size);
      assert.equal(await d.digest(), sha(Buffer.concat([data, more])));
      d.close();
    }
  });

  test('bytes that are not in the file fail the digest with a message naming the file', async () => {
    const file = join(dir, 'short');
    const data = randomBytes(WORKER_MIN_BYTES);
    writeFileSync(file, data);
    const failures: string[] = [];
    const d = await RunningDigest.resume(file, data.length, { onWorkerFailure: (err) => failures.push(err.message) });
    // Told about bytes that never landed: the worker cannot read them, nor can the fallback.
    d.written(Buffer.alloc(100), data.length);
    await assert.rejects(d.digest(), new RegExp(`${file} holds ${data.length} bytes, expected ${data.length + 100}`));
    assert.equal(failures.length, 1);
    assert.match(failures[0]!, /ends at/);
    d.close();
  });

  test('a write reported out of order is refused', () => {
    const d = new RunningDigest(join(dir, 'order'));
    assert.throws(() => d.written(Buffer.alloc(1), 5), /write at 5 after 0 bytes/);
  });
});
