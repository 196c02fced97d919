/**
 * Garbage collection in a running berthd: unreferenced blobs go (from the metadata and from
 * disk); blobs reachable from gc roots and from live leases stay; an expired lease is
 * collected together with what only it held. Collections are forced with a synchronous lease
 * delete, the way clients wait for one.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { collectGarbage, startDaemon, ctr, type TestDaemon } from '../helpers/daemon.js';
import { ContentDefinition } from '../../api/gen/services/content/v1/content.js';
import { LeasesDefinition } from '../../api/gen/services/leases/v1/leases.js';
import { IntrospectionDefinition } from '../../api/gen/services/introspection/v1/introspection.js';
import type { Connection } from '../../client/connection.js';

const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const rfc3339 = (d: Date) => d.toISOString().replace(/\.\d+Z$/, 'Z');

/** Writes one blob in a single Write session (STAT, COMMIT with data). */
async function put(conn: Connection, data: Buffer, labels: Record<string, string> = {}): Promise<string> {
  const call = await conn.service(ContentDefinition).write();
  const it = call.responses[Symbol.asyncIterator]();
  await call.write({ action: 0, ref: `put-${sha(data)}`, total: data.length, expected: sha(data) });
  await it.next();
  await call.write({ action: 2, offset: 0, data, total: data.length, expected: sha(data), labels });
  const r = await it.next();
  call.end();
  for (;;) if ((await it.next()).done) break;
  assert.equal(r.value?.digest, sha(data));
  return sha(data);
}

describe('garbage collection', () => {
  let d: TestDaemon;
  before(async () => {
    // containerd's schedule, not the tests' quiet one: these tests are about the scheduler.
    d = await startDaemon({ periodicGc: true });
  });
  after(async () => {
    await d?.dispose();
  });
  const onDisk = () => {
    const dir = join(d.root, 'io.containerd.content.v1.content', 'blobs', 'sha256');
    return existsSync(dir) ? readdirSync(dir).map((h) => `sha256:${h}`) : [];
  };
  const listed = async (conn: Connection) => {
    const out: string[] = [];
    for await (const b of conn.service(ContentDefinition).list({ filters: [] })) out.push(...b.info.map((i) => i.digest));
    return out.sort();
  };

  test('the scheduler plugin exports containerd\'s settings', async () => {
    const { plugins } = await d.connect().service(IntrospectionDefinition).plugins({ filters: ['type==io.containerd.gc.v1'] });
    assert.equal(plugins.length, 1);
    assert.equal(plugins[0]!.id, 'scheduler');
    assert.deepEqual(plugins[0]!.requires, ['io.containerd.metadata.v1']);
    assert.deepEqual(plugins[0]!.exports, { PauseThreshold: '0.02', DeletionThreshold: '0', MutationThreshold: '100', ScheduleDelay: '0s' });
  });

  test('unreferenced blobs go; roots, their references and live leases keep theirs; expired leases are collected', async () => {
    const conn = d.connect('gc1');
    const leases = conn.service(LeasesDefinition);
    // Nothing pending (the startup collection included) while the unlabelled children are written.
    await collectGarbage(conn);
    const config = await put(conn, Buffer.from('config'));
    const layer = await put(conn, Buffer.from('layer'));
    const manifest = await put(conn, Buffer.from('manifest'), {
      'containerd.io/gc.root': rfc3339(new Date()),
      'containerd.io/gc.ref.content.config': config,
      'containerd.io/gc.ref.content.l.0': layer,
    });
    const orphan = await put(conn, Buffer.from('orphan'));

    await leases.create({ id: 'live', labels: { 'containerd.io/gc.expire': rfc3339(new Date(Date.now() + 3600_000)) } });
    await leases.create({ id: 'old', labels: { 'containerd.io/gc.expire': rfc3339(new Date(Date.now() + 1500)) } });
    conn.lease = 'live';
    const leased = await put(conn, Buffer.from('leased'));
    conn.lease = 'old';
    const expiring = await put(conn, Buffer.from('expiring'));
    conn.lease = undefined;
    assert.deepEqual((await leases.listResources({ id: 'old' })).resources, [{ id: expiring, type: 'content' }]);

    await collectGarbage(conn);
    assert.deepEqual(await listed(conn), [config, layer, manifest, leased, expiring].sort());
    assert.equal(onDisk().includes(orphan), false, 'the orphan is gone from disk');

    // Let the short lease expire: it is collected with what only it held.
    await new Promise((r) => setTimeout(r, 2100));
    await collectGarbage(conn);
    assert.deepEqual(await listed(conn), [config, layer, manifest, leased].sort());
    assert.equal(onDisk().includes(expiring), false);
    assert.deepEqual((await leases.list({ filters: [] })).leases.map((l) => l.id), ['live']);

    // Dropping the root label releases the whole graph.
    await conn.service(ContentDefinition).update({ info: { digest: manifest, labels: {} }, updateMask: ['labels'] });
    await collectGarbage(conn);
    assert.deepEqual(await listed(conn), [leased]);
    assert.deepEqual(onDisk().sort(), [leased]);
  });

  test('a blob another namespace still holds stays on disk', async () => {
    const a = d.connect('gc-a');
    const b = d.connect('gc-b');
    const data = Buffer.from('in two namespaces');
    await collectGarbage(a);
    await put(a, data, { 'containerd.io/gc.root': 'yes' });
    await put(b, data);
    await collectGarbage(b);
    assert.deepEqual(await listed(b), []);
    assert.deepEqual(await listed(a), [sha(data)]);
    assert.ok(onDisk().includes(sha(data)));
  });

  test('a deletion schedules a collection by itself, which takes unreferenced blobs with it', async () => {
    const conn = d.connect('gc-delete');
    await collectGarbage(conn);
    await put(conn, Buffer.from('unreferenced'));
    await put(conn, Buffer.from('to delete'));
    await conn.service(ContentDefinition).delete({ digest: sha(Buffer.from('to delete')) });
    const unreferenced = sha(Buffer.from('unreferenced'));
    // The records go in the collection, the files just after it (the content sweep follows).
    for (let i = 0; i < 50 && ((await listed(conn)).length || onDisk().includes(unreferenced)); i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(await listed(conn), []);
    assert.equal(onDisk().includes(unreferenced), false);
  });
});

describe('garbage collection of what ctr leaves behind', () => {
  // The tests' quiet schedule: the blob stays until the collection the test asks for.
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon();
  });
  after(async () => {
    await d?.dispose();
  });

  test('blobs made with ctr content ingest (no labels, no lease) disappear at the next collection', async () => {
    const conn = d.connect('gc-ctr');
    const res = await ctr(d.address, ['content', 'ingest', 'plain'], { namespace: 'gc-ctr', input: 'plain blob' });
    assert.equal(res.code, 0, res.stderr);
    const listed = async () => {
      const out: string[] = [];
      for await (const b of conn.service(ContentDefinition).list({ filters: [] })) out.push(...b.info.map((i) => i.digest));
      return out;
    };
    assert.deepEqual(await listed(), [sha(Buffer.from('plain blob'))]);
    await collectGarbage(conn);
    assert.deepEqual(await listed(), []);
  });
});
