// Gunzip and diff-id hashing on the worker thread: the same bytes, digest and errors as zlib
// on the main thread, flow control, several layers at once, and early abandonment.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { applyRuntimeV8Flags } from '../../../../../../core/sys/v8flags.js';
import { WorkerGunzip } from '../../../../../../plugins/differ/walking/archive/gunzip-worker.js';

/** Half random, half repetitive: 8 MiB that compresses to a few MiB. */
function layerBytes(seed: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < 64; i++) parts.push(i % 2 ? randomBytes(64 * 1024) : Buffer.alloc(64 * 1024, (seed + i) & 0xff));
  return Buffer.concat(parts.concat(parts));
}

/** The blob as a stream of 1 MiB reads, like the content store's reader. */
function blobStream(blob: Buffer): Readable {
  const chunks: Buffer[] = [];
  for (let o = 0; o < blob.length; o += 1 << 20) chunks.push(blob.subarray(o, o + (1 << 20)));
  return Readable.from(chunks, { objectMode: false });
}

async function drain(r: Readable, delayEveryMiB = 0): Promise<Buffer> {
  const out: Buffer[] = [];
  let sinceDelay = 0;
  for await (const c of r) {
    out.push(c as Buffer);
    sinceDelay += (c as Buffer).length;
    if (delayEveryMiB && sinceDelay >= delayEveryMiB << 20) {
      sinceDelay = 0;
      await new Promise((res) => setTimeout(res, 5));
    }
  }
  return Buffer.concat(out);
}

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

test('inflates and hashes: the bytes, the diff id and the size', async () => {
  const plain = layerBytes(1);
  const g = new WorkerGunzip(blobStream(gzipSync(plain, { level: 1 })));
  const out = await drain(g);
  assert.ok(out.equals(plain));
  assert.equal(g.digest, sha(plain));
  assert.equal(g.bytes, plain.length);
});

test('a slow reader holds the worker back and still gets every byte', async () => {
  const plain = layerBytes(2);
  const g = new WorkerGunzip(blobStream(gzipSync(plain, { level: 1 })));
  const out = await drain(g, 1);
  assert.ok(out.equals(plain));
  assert.equal(g.digest, sha(plain));
});

test('several layers at once share the worker', async () => {
  const plains = [3, 4, 5].map(layerBytes);
  const streams = plains.map((p) => new WorkerGunzip(blobStream(gzipSync(p, { level: 1 }))));
  const outs = await Promise.all(streams.map((s) => drain(s)));
  outs.forEach((o, i) => assert.ok(o.equals(plains[i]!)));
  streams.forEach((s, i) => assert.equal(s.digest, sha(plains[i]!)));
});

test('corrupt and truncated data fail with zlib\'s own errors', async () => {
  const blob = gzipSync(layerBytes(6), { level: 1 });
  const corrupt = Buffer.from(blob);
  corrupt.fill(0x55, 100, 4000);
  await assert.rejects(drain(new WorkerGunzip(blobStream(corrupt))), (e: NodeJS.ErrnoException) => e.code === 'Z_DATA_ERROR');
  await assert.rejects(drain(new WorkerGunzip(blobStream(blob.subarray(0, blob.length - 100)))), /unexpected end of file/);
});

test('a reader that gives up early releases the job; the next layer still works', async () => {
  const plain = layerBytes(7);
  const source = blobStream(gzipSync(plain, { level: 1 }));
  const g = new WorkerGunzip(source);
  for await (const _ of g) break;
  assert.equal(g.destroyed, true);
  assert.equal(source.destroyed, true);
  const again = new WorkerGunzip(blobStream(gzipSync(plain, { level: 1 })));
  assert.ok((await drain(again)).equals(plain));
});

test("the daemon's run-time V8 flags are set again once the worker is online", async () => {
  // A new isolate puts some process-wide flags back (--semi-space-growth-factor: the daemon's
  // young generation then grew to its maximum for good). Simulated with a flag whose effect is
  // visible from JavaScript: --expose-gc.
  const { runInNewContext } = await import('node:vm');
  const { setFlagsFromString } = await import('node:v8');
  applyRuntimeV8Flags(['--expose-gc']);
  setFlagsFromString('--no-expose-gc');
  assert.equal(runInNewContext('typeof gc'), 'undefined');
  // A new shared worker: wait for the previous tests' one to go.
  await new Promise((r) => setTimeout(r, 2500));
  const plain = layerBytes(8);
  await drain(new WorkerGunzip(blobStream(gzipSync(plain, { level: 1 }))));
  assert.equal(runInNewContext('typeof gc'), 'function');
});
