/**
 * The Leases service over the wire, and `berth leases` against it: generated ids, labels,
 * filters, resources (types and validation), synchronous delete, errors; and writes made
 * under a lease header joining that lease.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDaemon, berth, type TestDaemon } from '../helpers/daemon.js';
import { LeasesDefinition } from '../../api/gen/services/leases/v1/leases.js';
import { ContentDefinition } from '../../api/gen/services/content/v1/content.js';
import { Code, codeOf } from '../../core/errdefs/errdefs.js';

describe('leases', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon();
  });
  after(async () => {
    await d?.dispose();
  });

  test('create, list with filters, resources, delete', async () => {
    const leases = d.connect('l1').service(LeasesDefinition);
    const { lease } = await leases.create({ id: '', labels: { team: 'a' } });
    assert.match(lease!.id, /^\d{1,9}-[A-Za-z0-9_-]{4}$/, 'generated ids look like containerd\'s');
    assert.ok(lease!.createdAt instanceof Date);
    assert.deepEqual(lease!.labels, { team: 'a' });
    await leases.create({ id: 'mine', labels: { team: 'b' } });
    await assert.rejects(leases.create({ id: 'mine' }), (e: Error) => codeOf(e) === Code.ALREADY_EXISTS);
    assert.deepEqual((await leases.list({ filters: ['labels.team==b'] })).leases.map((l) => l.id), ['mine']);
    assert.deepEqual((await leases.list({ filters: ['id==mine', `id==${lease!.id}`] })).leases.length, 2);
    assert.equal((await d.connect('elsewhere').service(LeasesDefinition).list({ filters: [] })).leases.length, 0);

    const dg = `sha256:${'b'.repeat(64)}`;
    await leases.addResource({ id: 'mine', resource: { id: dg, type: 'content' } });
    await leases.addResource({ id: 'mine', resource: { id: 'ing', type: 'ingests' } });
    await leases.addResource({ id: 'mine', resource: { id: 'snap', type: 'snapshots/overlayfs' } });
    assert.deepEqual((await leases.listResources({ id: 'mine' })).resources, [
      { id: dg, type: 'content' },
      { id: 'ing', type: 'ingests' },
      { id: 'snap', type: 'snapshots/overlayfs' },
    ]);
    await assert.rejects(leases.addResource({ id: 'mine', resource: { id: 'x', type: 'content' } }), (e: Error) => codeOf(e) === Code.INVALID_ARGUMENT);
    await assert.rejects(leases.addResource({ id: 'mine', resource: { id: 'x', type: 'containers' } }), (e: Error) => codeOf(e) === Code.UNIMPLEMENTED);
    await assert.rejects(leases.addResource({ id: 'nope', resource: { id: 'x', type: 'ingests' } }), (e: Error) =>
      codeOf(e) === Code.NOT_FOUND && /lease "nope"/.test(e.message));
    await leases.deleteResource({ id: 'mine', resource: { id: 'ing', type: 'ingests' } });
    assert.equal((await leases.listResources({ id: 'mine' })).resources.length, 2);

    await leases.delete({ id: 'mine', sync: true });
    await assert.rejects(leases.delete({ id: 'mine' }), (e: Error) => codeOf(e) === Code.NOT_FOUND);
    assert.deepEqual((await leases.list({ filters: [] })).leases.map((l) => l.id), [lease!.id]);
  });

  test('writes carrying a lease join it; an unknown lease is NOT_FOUND', async () => {
    const conn = d.connect('l2');
    await conn.service(LeasesDefinition).create({ id: 'pull' });
    conn.lease = 'pull';
    const call = await conn.service(ContentDefinition).write();
    const it = call.responses[Symbol.asyncIterator]();
    await call.write({ action: 0, ref: 'leased-ref' });
    await it.next();
    let res = await conn.service(LeasesDefinition).listResources({ id: 'pull' });
    assert.deepEqual(res.resources, [{ id: 'leased-ref', type: 'ingests' }]);
    await call.write({ action: 2, offset: 0, data: Buffer.from('payload') });
    const done = await it.next();
    call.end();
    for (;;) if ((await it.next()).done) break;
    res = await conn.service(LeasesDefinition).listResources({ id: 'pull' });
    assert.deepEqual(res.resources, [{ id: done.value!.digest, type: 'content' }]);

    conn.lease = 'missing';
    const bad = await conn.service(ContentDefinition).write();
    await bad.write({ action: 0, ref: 'r' });
    await assert.rejects(bad.responses[Symbol.asyncIterator]().next(), (e: Error) =>
      codeOf(e) === Code.NOT_FOUND && /lease does not exist/.test(e.message));
  });

  test('berth leases create|ls|rm', async () => {
    let r = await berth(d.address, ['leases', 'create', '--id', 'cli-lease', '--expires', '1h', 'a=b'], { namespace: 'l3' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'cli-lease\n');
    r = await berth(d.address, ['leases', 'create', '-x', '0s'], { namespace: 'l3' });
    const generated = r.stdout.trim();
    assert.match(generated, /^\d+-/);
    r = await berth(d.address, ['leases', 'ls'], { namespace: 'l3' });
    const lines = r.stdout.split('\n');
    assert.match(lines[0]!, /^ID +CREATED AT +LABELS +$/);
    const row = lines.find((l) => l.startsWith('cli-lease '))!;
    assert.match(row, /a=b,containerd\.io\/gc\.expire=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)/);
    assert.match(lines.find((l) => l.startsWith(generated))!, / - +$/);
    r = await berth(d.address, ['leases', 'ls', '-q', 'id==cli-lease'], { namespace: 'l3' });
    assert.equal(r.stdout, 'cli-lease\n');
    r = await berth(d.address, ['leases', 'rm', '--sync', 'cli-lease', generated], { namespace: 'l3' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `cli-lease\n${generated}\n`);
    r = await berth(d.address, ['leases', 'rm', 'cli-lease'], { namespace: 'l3' });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /lease "cli-lease": not found/);
  });
});
