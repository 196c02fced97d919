/**
 * Content over the wire against a real berthd: an ingest interrupted by kill -9 resumes from
 * its stored offset after a restart and commits the right digest, with nothing partial ever
 * visible as committed; two writers on one ref (exactly one proceeds); the Write protocol's
 * edges (offset checks, already-exists, the 1.6 double final response); Read ranges.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { collectGarbage, startDaemon, berth, type TestDaemon } from '../helpers/daemon.js';
import { ContentDefinition } from '../../api/gen/services/content/v1/content.js';
import type { Connection } from '../../client/connection.js';
import { Code, codeOf } from '../../core/errdefs/errdefs.js';

const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const MiB = 1 << 20;
const STAT = 0;
const WRITE = 1;
const COMMIT = 2;

/** A Write stream driven one request/response at a time. */
async function session(conn: Connection) {
  const call = await conn.service(ContentDefinition).write();
  const it = call.responses[Symbol.asyncIterator]();
  const next = async () => {
    const r = await it.next();
    if (r.done) throw new Error('stream ended');
    return r.value;
  };
  return {
    call,
    next,
    rest: async () => {
      const out = [];
      for (;;) {
        const r = await it.next();
        if (r.done) return out;
        out.push(r.value);
      }
    },
    send: async (req: Parameters<typeof call.write>[0]) => {
      await call.write(req);
      return next();
    },
  };
}

const blobsOnDisk = (d: TestDaemon) => {
  const dir = join(d.root, 'io.containerd.content.v1.content', 'blobs', 'sha256');
  return existsSync(dir) ? readdirSync(dir) : [];
};

describe('content over the wire', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon();
  });
  after(async () => {
    await d?.dispose();
  });

  test('kill -9 in the middle of a 200 MB ingest: restart, resume from the stored offset, commit', async () => {
    const data = randomBytes(200 * 1000 * 1000);
    const digest = sha(data);
    const ref = 'big-upload';
    let conn = d.connect('resume');
    const s = await session(conn);
    const first = await s.send({ action: STAT, ref, total: data.length, expected: digest });
    assert.equal(first.offset, 0);
    // Send about half, one confirmed message at a time, so the daemon has really received it.
    let offset = 0;
    while (offset < 100 * MiB) {
      const chunk = data.subarray(offset, offset + MiB);
      const r = await s.send({ action: WRITE, offset, data: chunk });
      offset += chunk.length;
      assert.equal(r.offset, offset);
    }
    // A few more in flight without waiting, then the crash.
    for (let i = 0; i < 4; i++) {
      s.call.write({ action: WRITE, offset, data: data.subarray(offset, offset + MiB) }).catch(() => undefined);
      offset += MiB;
    }
    await d.kill9();
    s.call.cancel();
    await d.restart();

    conn = d.connect('resume');
    const content = conn.service(ContentDefinition);
    const { statuses } = await content.listStatuses({ filters: [] });
    assert.equal(statuses.length, 1);
    const stored = statuses[0]!;
    assert.equal(stored.ref, ref);
    assert.equal(stored.total, data.length);
    assert.ok(stored.offset >= 100 * MiB, `stored offset ${stored.offset} covers what was acknowledged`);
    assert.ok(stored.offset <= 104 * MiB);
    // Nothing partial is visible as committed.
    const listed = [];
    for await (const b of content.list({ filters: [] })) listed.push(...b.info);
    assert.equal(listed.length, 0);
    assert.deepEqual(blobsOnDisk(d), []);
    await assert.rejects(content.info({ digest }), (e: Error) => codeOf(e) === Code.NOT_FOUND);

    // Resume: the writer reports the stored offset; send only the rest.
    const r = await session(conn);
    const st = await r.send({ action: STAT, ref, total: data.length, expected: digest });
    assert.equal(st.offset, stored.offset);
    assert.equal(st.digest, sha(data.subarray(0, stored.offset)), 'the running digest was rebuilt from the stored bytes');
    let at = st.offset;
    while (at < data.length) {
      const chunk = data.subarray(at, at + MiB);
      const resp = await r.send({ action: WRITE, offset: at, data: chunk });
      at += chunk.length;
      assert.equal(resp.offset, at);
    }
    const done = await r.send({ action: COMMIT, offset: at, total: data.length, expected: digest });
    assert.equal(done.digest, digest);
    assert.equal(done.offset, data.length);
    r.call.end();
    await r.rest();

    const info = await content.info({ digest });
    assert.equal(info.info?.size, data.length);
    assert.deepEqual(blobsOnDisk(d), [digest.slice(7)]);
    assert.equal((await content.listStatuses({ filters: [] })).statuses.length, 0);
    const h = createHash('sha256');
    for await (const chunk of content.read({ digest })) h.update(chunk.data);
    assert.equal(`sha256:${h.digest('hex')}`, digest);
    // The bundled daemon hashed on its worker thread, without falling back to the main one.
    assert.doesNotMatch(d.log(), /hashing worker failed/);
  });

  test('the berth CLI resumes an interrupted ingest from the stored offset', async () => {
    const data = randomBytes(20 * MiB);
    const digest = sha(data);
    const conn = d.connect('cli-resume');
    await collectGarbage(conn);
    const s = await session(conn);
    await s.send({ action: STAT, ref: 'cli', total: data.length });
    await s.send({ action: WRITE, offset: 0, data: data.subarray(0, 7 * MiB) });
    s.call.end();
    await s.rest();
    const res = await berth(d.address, ['content', 'ingest', '--expected-size', String(data.length), '--expected-digest', digest, 'cli'], {
      namespace: 'cli-resume',
      input: data,
    });
    assert.equal(res.code, 0, res.stderr);
    const info = await conn.service(ContentDefinition).info({ digest });
    assert.equal(info.info?.size, data.length);
  });

  test('berth content edit: the editor\'s result (even a replaced file) becomes a new blob that stays', async () => {
    const ns = 'edit';
    const original = Buffer.from('{"a":"b"}');
    const ingest = await berth(d.address, ['content', 'ingest', 'orig'], { namespace: ns, input: original });
    assert.equal(ingest.code, 0, ingest.stderr);
    // sed -i saves by replacing the file, which ctr 1.6's edit misses (it rereads its old handle).
    const edited = await berth(d.address, ['content', 'edit', '--editor', 'sed -i s/b/c/', sha(original)], { namespace: ns });
    assert.equal(edited.code, 0, edited.stderr);
    const expected = Buffer.from('{"a":"c"}');
    assert.equal(edited.stdout, `${sha(expected)}\n`);
    await collectGarbage(d.connect(ns));
    const info = await d.connect(ns).service(ContentDefinition).info({ digest: sha(expected) });
    assert.ok(info.info?.labels['containerd.io/gc.root'], 'kept by a gc root label');
    // Nothing changed: the digest the store already holds.
    assert.equal((await berth(d.address, ['content', 'edit', '--editor', 'true', sha(expected)], { namespace: ns })).stdout, `${sha(expected)}\n`);
    const errors = [
      [['content', 'edit', '--editor', 'false', sha(expected)], 'berth: editor "false" exited with 1\n'],
      [['content', 'edit', '--editor', 'true', '--validate', 'json', sha(expected)], 'berth: validating the edit result not supported\n'],
      [['content', 'edit', '--editor', 'true', 'nope'], 'berth: invalid digest "nope": invalid digest format: invalid argument\n'],
    ] as const;
    for (const [args, stderr] of errors) {
      const r = await berth(d.address, [...args], { namespace: ns });
      assert.deepEqual([r.code, r.stderr], [1, stderr], args.join(' '));
    }
  });

  test('two writers on one ref: exactly one proceeds, the other gets UNAVAILABLE', async () => {
    const conn = d.connect('locks');
    const a = await session(conn);
    await a.send({ action: STAT, ref: 'shared-ref' });
    const b = await session(d.connect('locks'));
    await assert.rejects(
      b.send({ action: STAT, ref: 'shared-ref' }),
      (e: Error) => codeOf(e) === Code.UNAVAILABLE && /ref locks\/1\/shared-ref locked/.test(e.message),
    );
    const payload = Buffer.from('only one writer');
    await a.send({ action: WRITE, offset: 0, data: payload });
    const done = await a.send({ action: COMMIT, offset: payload.length, expected: sha(payload) });
    assert.equal(done.digest, sha(payload));
    a.call.end();
    await a.rest();
    // Concurrent starts: one wins, the other is refused.
    const results = await Promise.allSettled(
      [0, 1].map(async () => {
        const s = await session(d.connect('locks'));
        const r = await s.send({ action: STAT, ref: 'race' });
        await new Promise((res) => setTimeout(res, 1500));
        s.call.end();
        await s.rest();
        return r;
      }),
    );
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    assert.equal(codeOf(rejected.reason), Code.UNAVAILABLE);
  });

  test('Write protocol: echoes, offsets, the running digest in every answer, OUT_OF_RANGE, double final response, ALREADY_EXISTS', async () => {
    const conn = d.connect('proto');
    await collectGarbage(conn);
    const payload = Buffer.from('hello, content');
    const s = await session(conn);
    const stat = await s.send({ action: STAT, ref: 'p', total: payload.length });
    assert.equal(stat.action, STAT);
    assert.equal(stat.digest, sha(Buffer.alloc(0)));
    assert.equal(stat.total, payload.length);
    assert.ok(stat.startedAt instanceof Date && stat.updatedAt instanceof Date);
    const w = await s.send({ action: WRITE, offset: 0, data: payload.subarray(0, 5) });
    assert.equal(w.action, WRITE);
    assert.equal(w.offset, 5);
    assert.equal(w.digest, sha(payload.subarray(0, 5)), 'a WRITE answer carries the digest so far, as containerd\'s');
    assert.equal((await s.send({ action: STAT })).digest, sha(payload.subarray(0, 5)));
    await assert.rejects(s.send({ action: WRITE, offset: 3, data: payload.subarray(3) }), (e: Error) =>
      codeOf(e) === Code.OUT_OF_RANGE && /write @3 must occur at current offset 5/.test(e.message));

    // The ingest survived the failed session; offset 0 on a non-empty ingest restarts it.
    const s2 = await session(conn);
    assert.equal((await s2.send({ action: STAT, ref: 'p' })).offset, 5);
    const restart = await s2.send({ action: WRITE, offset: 0, data: payload });
    assert.equal(restart.offset, payload.length);
    const commit = await s2.send({ action: COMMIT, offset: payload.length, total: payload.length, expected: sha(payload), labels: { k: 'v' } });
    assert.equal(commit.action, COMMIT);
    assert.equal(commit.digest, sha(payload));
    s2.call.end();
    const extra = await s2.rest();
    assert.equal(extra.length, 1, 'containerd 1.6 sends the final response twice');
    assert.deepEqual(extra[0], commit);
    const info = await conn.service(ContentDefinition).info({ digest: sha(payload) });
    assert.deepEqual(info.info?.labels, { k: 'v' });

    // Expected digest already here: ALREADY_EXISTS (from the writer, or from the session).
    const s3 = await session(conn);
    await assert.rejects(s3.send({ action: STAT, ref: 'p2', expected: sha(payload) }), (e: Error) => codeOf(e) === Code.ALREADY_EXISTS);
    const s4 = await session(conn);
    await s4.send({ action: STAT, ref: 'p3' });
    await assert.rejects(s4.send({ action: COMMIT, offset: 0, expected: sha(payload) }), (e: Error) =>
      codeOf(e) === Code.ALREADY_EXISTS && /blob with expected digest/.test(e.message));
    assert.equal((await conn.service(ContentDefinition).listStatuses({ filters: ['ref==p3'] })).statuses.length, 0, 'the ingest was aborted');

    // A first message without a ref.
    const s5 = await session(conn);
    await assert.rejects(s5.send({ action: STAT }), (e: Error) => codeOf(e) === Code.INVALID_ARGUMENT && /first message must have a reference/.test(e.message));

    // Half-close without commit: the last response comes once more.
    const s6 = await session(conn);
    const last = await s6.send({ action: STAT, ref: 'p4' });
    s6.call.end();
    assert.deepEqual(await s6.rest(), [last]);
  });

  test('every WRITE answer of a multi-MiB upload carries the digest so far, also when the commit finds the blob present', async () => {
    // Go clients keep the last digest they were sent as the writer's Digest(); ctr's image
    // converter names an uncompressed layer by it when the commit says ALREADY_EXISTS.
    const conn = d.connect('running-digest');
    const data = randomBytes(6 * MiB + 5);
    for (const ref of ['first', 'second']) {
      const s = await session(conn);
      await s.send({ action: STAT, ref });
      let last = '';
      for (let at = 0; at < data.length; at += MiB) {
        const r = await s.send({ action: WRITE, offset: at, data: data.subarray(at, at + MiB) });
        assert.equal(r.digest, sha(data.subarray(0, at + MiB)), `${ref}: digest after ${r.offset} bytes`);
        last = r.digest;
      }
      assert.equal(last, sha(data));
      if (ref === 'first') {
        assert.equal((await s.send({ action: COMMIT, offset: data.length })).digest, sha(data));
        s.call.end();
        await s.rest();
      } else {
        await assert.rejects(s.send({ action: COMMIT, offset: data.length }), (e: Error) => codeOf(e) === Code.ALREADY_EXISTS);
      }
    }
  });

  test('Read: ranges, chunks of at most 1 MiB, OUT_OF_RANGE, validation', async () => {
    const conn = d.connect('read');
    await collectGarbage(conn);
    const data = randomBytes(3 * MiB + 17);
    const res = await berth(d.address, ['content', 'ingest', 'r'], { namespace: 'read', input: data });
    assert.equal(res.code, 0, res.stderr);
    const c = conn.service(ContentDefinition);
    const read = async (offset: number, size: number) => {
      const parts = [];
      for await (const r of c.read({ digest: sha(data), offset, size })) {
        assert.ok(r.data.length <= MiB);
        parts.push(r);
      }
      return parts;
    };
    const all = await read(0, 0);
    assert.deepEqual(Buffer.concat(all.map((p) => p.data)), data);
    assert.deepEqual(all.map((p) => p.offset), [0, MiB, 2 * MiB, 3 * MiB]);
    assert.deepEqual(Buffer.concat((await read(MiB + 5, 10)).map((p) => p.data)), data.subarray(MiB + 5, MiB + 15));
    assert.deepEqual(Buffer.concat((await read(data.length - 3, 100)).map((p) => p.data)), data.subarray(data.length - 3));
    await assert.rejects(read(data.length + 1, 0), (e: Error) => codeOf(e) === Code.OUT_OF_RANGE);
    await assert.rejects(read(0, 0).then(() => c.info({ digest: 'sha256:xyz' })), (e: Error) =>
      codeOf(e) === Code.INVALID_ARGUMENT && /failed validation/.test(e.message));
    await assert.rejects(c.delete({ digest: 'nope' }), (e: Error) => codeOf(e) === Code.INVALID_ARGUMENT);
    await assert.rejects(c.update({ info: { digest: sha(data) }, updateMask: ['size'] }), (e: Error) => codeOf(e) === Code.INVALID_ARGUMENT);
  });

  test('List sends batches of at most 100', async () => {
    const conn = d.connect('many');
    await collectGarbage(conn);
    const r = await berth(d.address, ['content', 'ingest', 'm0'], { namespace: 'many', input: 'blob-0' });
    assert.equal(r.code, 0, r.stderr);
    // Keep them through the collections 130 commits may schedule (mutation threshold).
    await conn.service(ContentDefinition).update({ info: { digest: sha(Buffer.from('blob-0')), labels: { 'containerd.io/gc.root': 'x' } }, updateMask: ['labels'] });
    for (let i = 1; i < 130; i++) {
      const s = await session(conn);
      const b = Buffer.from(`blob-${i}`);
      await s.send({ action: STAT, ref: `m${i}` });
      await s.send({ action: COMMIT, offset: 0, data: b, expected: sha(b), labels: { 'containerd.io/gc.root': 'x' } });
      s.call.end();
      await s.rest();
    }
    const sizes = [];
    for await (const batch of conn.service(ContentDefinition).list({ filters: [] })) sizes.push(batch.info.length);
    assert.deepEqual(sizes, [100, 30]);
  });
});
