/**
 * The Containers service over gRPC against a real berthd: validation and containerd's error
 * texts, update field masks (immutable runtime/snapshotter), filters, ListStream, events,
 * namespaces holding containers, persistence across restarts — and the same through ctr.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { ctr, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { ContainersDefinition } from '../../api/gen/services/containers/v1/containers.js';
import { NamespacesDefinition } from '../../api/gen/services/namespaces/v1/namespace.js';
import { Code, codeOf } from '../../core/errdefs/errdefs.js';
import { SPEC_TYPE_URL } from '../../core/containers/containers.js';

const spec = (extra: Record<string, unknown> = {}) => ({ typeUrl: SPEC_TYPE_URL, value: Buffer.from(JSON.stringify({ ociVersion: '1.0.2-dev', ...extra })) });
const runtime = { name: 'io.containerd.runc.v2', options: { typeUrl: 'containerd.runc.v1.Options', value: Buffer.alloc(0) } };
const ZERO = new Date(-62135596800000);

describe('containers service', () => {
  let d: TestDaemon;
  const NS = `ctrs-${process.pid}`;
  const svc = () => d.connect(NS).service(ContainersDefinition);

  before(async () => {
    d = await startDaemon();
  });
  after(async () => {
    await d?.dispose();
  });

  test('create, get, list, delete with containerd messages', async () => {
    const s = svc();
    const { container } = await s.create({
      container: { id: 'a1', labels: { team: 'x', empty: '' }, image: 'img:1', runtime, spec: spec(), createdAt: ZERO, updatedAt: ZERO },
    });
    assert.equal(container!.id, 'a1');
    assert.deepEqual(container!.labels, { team: 'x' });
    assert.ok(container!.createdAt!.getTime() > Date.now() - 60_000, 'server sets created_at');
    assert.equal(container!.createdAt!.getTime(), container!.updatedAt!.getTime());
    assert.deepEqual(container!.runtime, runtime);
    assert.deepEqual(container!.spec, spec());

    const got = (await s.get({ id: 'a1' })).container!;
    assert.deepEqual(got, container);

    await assert.rejects(s.create({ container: { id: 'a1', runtime, spec: spec() } }),
      (e) => codeOf(e) === Code.ALREADY_EXISTS && (e as Error).message === 'container "a1": already exists');
    await assert.rejects(s.get({ id: 'zz' }),
      (e) => codeOf(e) === Code.NOT_FOUND && (e as Error).message === `container "zz" in namespace "${NS}": not found`);
    await assert.rejects(s.create({ container: { id: 'bad id', runtime, spec: spec() } }),
      (e) => codeOf(e) === Code.INVALID_ARGUMENT && /^create container failed validation: container\.ID: identifier "bad id" must match/.test((e as Error).message));
    await assert.rejects(s.create({ container: { id: 'nort', spec: spec() } }),
      (e) => codeOf(e) === Code.INVALID_ARGUMENT && /container\.Runtime\.Name must be set/.test((e as Error).message));
    await assert.rejects(s.create({ container: { id: 'nospec', runtime } }),
      (e) => codeOf(e) === Code.INVALID_ARGUMENT && /container\.Spec must be set/.test((e as Error).message));
    await assert.rejects(s.create({ container: { id: 'nosn', runtime, spec: spec(), snapshotKey: 'k' } }),
      (e) => codeOf(e) === Code.INVALID_ARGUMENT && /Snapshotter must be set if container\.SnapshotKey is set/.test((e as Error).message));

    await s.delete({ id: 'a1' });
    await assert.rejects(s.delete({ id: 'a1' }), (e) => codeOf(e) === Code.NOT_FOUND && (e as Error).message === 'container a1: not found');
  });

  test('update masks: labels, labels.<key>, spec, image, snapshotkey; immutable fields', async () => {
    const s = svc();
    await s.create({ container: { id: 'u1', labels: { a: '1', b: '2' }, image: 'i', runtime, spec: spec(), snapshotter: 'overlayfs', snapshotKey: 'u1' } });
    const base = (await s.get({ id: 'u1' })).container!;
    let c = (await s.update({ container: { ...base, labels: { a: '9', c: '3' } }, updateMask: ['labels.a', 'labels.b'] })).container!;
    assert.deepEqual(c.labels, { a: '9' }, 'labels.b cleared, c not in the mask');
    assert.ok(c.updatedAt!.getTime() >= base.updatedAt!.getTime());
    assert.equal(c.createdAt!.getTime(), base.createdAt!.getTime());
    c = (await s.update({ container: { ...c, labels: { z: '1' }, image: 'j', spec: spec({ hostname: 'h' }) }, updateMask: ['labels', 'image', 'spec'] })).container!;
    assert.deepEqual(c.labels, { z: '1' });
    assert.equal(c.image, 'j');
    assert.match(Buffer.from(c.spec!.value).toString(), /"hostname":"h"/);
    await assert.rejects(s.update({ container: { ...c, runtime: { name: 'other', options: undefined } }, updateMask: ['runtime'] }),
      (e) => codeOf(e) === Code.INVALID_ARGUMENT && /cannot update "runtime" field on "u1"/.test((e as Error).message));
    await assert.rejects(s.update({ container: { ...c, runtime: { name: 'other', options: undefined } }, updateMask: [] }),
      (e) => codeOf(e) === Code.INVALID_ARGUMENT && /container\.Runtime\.Name field is immutable/.test((e as Error).message));
    await assert.rejects(s.update({ container: { ...c, snapshotter: 'native' } }),
      (e) => codeOf(e) === Code.INVALID_ARGUMENT && /container\.Snapshotter field is immutable/.test((e as Error).message));
    // A full replace (no mask) replaces labels, spec, extensions, image and the snapshot key.
    c = (await s.update({ container: { ...c, labels: {}, image: 'k', snapshotKey: 'k2', extensions: { e: { typeUrl: 't', value: Buffer.from('v') } } } })).container!;
    assert.deepEqual(c.labels, {});
    assert.equal(c.image, 'k');
    assert.equal(c.snapshotKey, 'k2');
    assert.deepEqual(c.extensions, { e: { typeUrl: 't', value: Buffer.from('v') } });
    await assert.rejects(s.update({ container: { ...c, id: 'missing' } }), (e) => codeOf(e) === Code.NOT_FOUND && (e as Error).message === 'container "missing": not found');
    await s.delete({ id: 'u1' });
  });

  test('filters and ListStream', async () => {
    const s = svc();
    await s.create({ container: { id: 'f1', labels: { app: 'web' }, image: 'nginx', runtime, spec: spec() } });
    await s.create({ container: { id: 'f2', labels: { app: 'db' }, image: 'pg', runtime: { name: 'io.containerd.other.v1', options: undefined }, spec: spec(), snapshotter: 'native', snapshotKey: 'f2' } });
    const ids = async (...filters: string[]) => (await s.list({ filters })).containers.map((c) => c.id);
    assert.deepEqual(await ids(), ['f1', 'f2']);
    assert.deepEqual(await ids('labels.app==web'), ['f1']);
    assert.deepEqual(await ids('image==pg'), ['f2']);
    assert.deepEqual(await ids('runtime.name==io.containerd.other.v1'), ['f2']);
    // containerd's fields only: there is no snapshotter field to match.
    assert.deepEqual(await ids('snapshotter==native'), []);
    assert.deepEqual(await ids('id~=^f', 'labels.app!=web'), ['f1', 'f2']);
    assert.deepEqual(await ids('id==f1', 'id==f2'), ['f1', 'f2']);
    assert.deepEqual(await ids('id==f1,labels.app==db'), []);
    const streamed: string[] = [];
    for await (const m of s.listStream({ filters: ['labels.app'] })) streamed.push(m.container!.id);
    assert.deepEqual(streamed, ['f1', 'f2']);
    await assert.rejects(s.list({ filters: ['id=='] }), (e) => codeOf(e) === Code.INVALID_ARGUMENT);

    // A namespace holding containers cannot be removed.
    const ns = d.connect(NS).service(NamespacesDefinition);
    await assert.rejects(ns.delete({ name: NS }), (e) => codeOf(e) === Code.FAILED_PRECONDITION && /containers/.test((e as Error).message));
    await s.delete({ id: 'f1' });
    await s.delete({ id: 'f2' });
  });

  test('events and ctr: create/update/delete, info, label, ls', async () => {
    const ev = spawn('ctr', ['-a', d.address, 'events', `namespace==${NS}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    ev.stdout.on('data', (b) => (out += b));
    await new Promise((r) => setTimeout(r, 400));
    const C = (...args: string[]) => ctr(d.address, args, { namespace: NS });
    let r = await C('containers', 'create', '--label', 'k=v', '--rootfs', '/tmp', 'e1', '/bin/true');
    assert.equal(r.code, 0, r.stderr);
    r = await C('containers', 'label', 'e1', 'k=w');
    assert.equal(r.stdout, 'k=w\n');
    r = await C('containers', 'ls');
    assert.equal(r.stdout, 'CONTAINER    IMAGE    RUNTIME                  \ne1           -        io.containerd.runc.v2    \n');
    r = await C('containers', 'info', 'e1');
    const info = JSON.parse(r.stdout);
    assert.deepEqual(info.Labels, { k: 'w' });
    assert.equal(info.Spec.root.path, '/tmp');
    assert.deepEqual(info.Runtime, { Name: 'io.containerd.runc.v2', Options: { type_url: 'containerd.runc.v1.Options' } });
    assert.equal((await C('containers', 'rm', 'e1')).code, 0);
    const deadline = Date.now() + 5000;
    while (!out.includes('/containers/delete') && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
    ev.kill();
    const lines = out.trim().split('\n');
    assert.match(lines[0]!, / \/containers\/create \{"id":"e1","runtime":\{"name":"io.containerd.runc.v2","options":\{"type_url":"containerd.runc.v1.Options"\}\}\}$/);
    assert.match(lines[1]!, / \/containers\/update \{"id":"e1","labels":\{"k":"w"\}\}$/);
    assert.match(lines[2]!, / \/containers\/delete \{"id":"e1"\}$/);
  });

  test('records persist across a daemon restart', async () => {
    const s = svc();
    await s.create({ container: { id: 'p1', labels: { x: 'y' }, runtime, spec: spec() } });
    await d.kill9();
    await d.restart();
    const { container } = await d.connect(NS).service(ContainersDefinition).get({ id: 'p1' });
    assert.deepEqual(container!.labels, { x: 'y' });
    await d.connect(NS).service(ContainersDefinition).delete({ id: 'p1' });
  });
});
