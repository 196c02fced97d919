// The images service on a real berthd: gRPC semantics (validation, masks, filters, errors,
// events), the real ctr's images ls/label/tag/rm/check against it, namespace holdings, and gc:
// images keep their content alive, and `images rm --sync` collects it.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { berth, ctr, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { ImagesDefinition } from '../../api/gen/services/images/v1/images.js';
import { EventsDefinition } from '../../api/gen/services/events/v1/events.js';
import { NamespacesDefinition } from '../../api/gen/services/namespaces/v1/namespace.js';
import { ImageCreate, ImageDelete, ImageUpdate } from '../../api/gen/events/image.js';
import { isAlreadyExists, isFailedPrecondition, isInvalidArgument, isNotFound } from '../../core/errdefs/errdefs.js';
import { ContentClient } from '../../client/images/content.js';
import { baseLayer, buildImage } from '../unit/client/images/fixtures.js';

let d: TestDaemon;
before(async () => { d = await startDaemon(); });
after(async () => { await d?.dispose(); });

const dg = (c: string) => `sha256:${c.repeat(64)}`;
const target = (c = 'a', size = 10) => ({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: dg(c), size });
const ok = async (args: string[], ns = 'default') => {
  const r = await ctr(d.address, args, { namespace: ns });
  assert.equal(r.code, 0, `ctr ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

describe('Images gRPC service', () => {
  it('creates, gets, lists with filters, updates with masks and deletes', async () => {
    const svc = d.connect('img').service(ImagesDefinition);
    const zero = new Date(Date.UTC(1, 0, 1));
    const created = await svc.create({ image: { name: 'example.com/a:1', labels: { team: 'x', gone: '' }, target: { ...target('a'), annotations: { k: 'v' } }, createdAt: zero, updatedAt: zero } });
    assert.equal(created.image?.name, 'example.com/a:1');
    assert.deepEqual(created.image?.labels, { team: 'x' }, 'empty label values are not stored');
    assert.ok(created.image!.createdAt!.getTime() > Date.now() - 60_000, 'server sets created_at');
    assert.deepEqual(created.image?.target, { ...target('a'), annotations: { k: 'v' } });
    await svc.create({ image: { name: 'example.com/b:1', labels: { team: 'y' }, target: { ...target('b'), mediaType: 'application/vnd.oci.image.index.v1+json' } } });

    await assert.rejects(svc.create({ image: { name: 'example.com/a:1', target: target('a') } }), (e) => isAlreadyExists(e) && /image "example.com\/a:1": already exists/.test(String(e)));
    await assert.rejects(svc.get({ name: 'nope' }), (e) => isNotFound(e) && /image "nope": not found/.test(String(e)));
    await assert.rejects(svc.create({ image: { name: '', target: target() } }), isInvalidArgument);
    await assert.rejects(svc.create({ image: { name: 'x', target: { ...target(), digest: 'bad' } } }), (e) => isInvalidArgument(e) && /Target.Digest "bad" invalid/.test(String(e)));
    await assert.rejects(svc.create({ image: { name: 'x', target: { ...target(), size: 0 } } }), (e) => isInvalidArgument(e) && /Target.Size must be greater than zero/.test(String(e)));
    await assert.rejects(svc.create({ image: { name: 'x', target: { ...target(), mediaType: '' } } }), (e) => isInvalidArgument(e) && /Target.MediaType must be set/.test(String(e)));

    const names = async (filters: string[]) => (await svc.list({ filters })).images.map((i) => i.name);
    assert.deepEqual(await names([]), ['example.com/a:1', 'example.com/b:1']);
    assert.deepEqual(await names(['labels.team==y']), ['example.com/b:1']);
    assert.deepEqual(await names([`target.digest==${dg('a')}`]), ['example.com/a:1']);
    assert.deepEqual(await names(['target.mediatype==application/vnd.oci.image.index.v1+json']), ['example.com/b:1']);
    assert.deepEqual(await names(['name~=a:1$', 'name==example.com/b:1']), ['example.com/a:1', 'example.com/b:1']);
    // containerd's fields only: target annotations are not a filter field.
    assert.deepEqual(await names(['annotations.k==v']), []);

    let u = await svc.update({ image: { name: 'example.com/a:1', labels: { extra: '1' } }, updateMask: ['labels.extra'] });
    assert.deepEqual(u.image?.labels, { team: 'x', extra: '1' });
    assert.equal(u.image?.target?.digest, dg('a'), 'target kept');
    u = await svc.update({ image: { name: 'example.com/a:1', labels: {} }, updateMask: ['labels.team'] });
    assert.deepEqual(u.image?.labels, { extra: '1' });
    u = await svc.update({ image: { name: 'example.com/a:1', target: target('c', 20) }, updateMask: ['target'] });
    assert.deepEqual(u.image?.target, { ...target('c', 20), annotations: {} });
    assert.deepEqual(u.image?.labels, { extra: '1' });
    assert.equal(u.image?.createdAt?.getTime(), created.image?.createdAt?.getTime());
    u = await svc.update({ image: { name: 'example.com/a:1', labels: { all: 'new' }, target: target('d', 5) } });
    assert.deepEqual(u.image?.labels, { all: 'new' }, 'no mask replaces everything');
    assert.equal(u.image?.target?.digest, dg('d'));
    await assert.rejects(svc.update({ image: { name: 'example.com/a:1' }, updateMask: ['name'] }), (e) => isInvalidArgument(e) && /cannot update "name" field/.test(String(e)));
    await assert.rejects(svc.update({ image: { name: 'nope', target: target() } }), isNotFound);
    await assert.rejects(svc.update({ image: { name: '', target: target() } }), isInvalidArgument);
    await assert.rejects(svc.update({ image: { name: 'example.com/a:1' } }), isInvalidArgument, 'no mask and no target fails validation');

    await svc.delete({ name: 'example.com/b:1' });
    await assert.rejects(svc.delete({ name: 'example.com/b:1' }), isNotFound);
    assert.deepEqual(await names([]), ['example.com/a:1']);
    await assert.rejects(d.connect('').service(ImagesDefinition).list({}), isFailedPrecondition);
  });

  it('publishes /images/create, /images/update and /images/delete', async () => {
    const ac = new AbortController();
    const seen: { topic: string; type: string; payload: unknown }[] = [];
    const stream = d.connect('ev').service(EventsDefinition).subscribe({ filters: ['namespace==ev', 'topic~=/images/'] }, { signal: ac.signal });
    const reading = (async () => {
      try {
        for await (const e of stream) {
          const ev = e.event!;
          const codec = { '/images/create': ImageCreate, '/images/update': ImageUpdate, '/images/delete': ImageDelete }[e.topic as '/images/create'];
          seen.push({ topic: e.topic, type: ev.typeUrl, payload: codec.decode(ev.value) });
          if (e.topic === '/images/delete') break;
        }
      } catch { /* cancelled */ }
    })();
    await new Promise((r) => setTimeout(r, 100));
    const svc = d.connect('ev').service(ImagesDefinition);
    await svc.create({ image: { name: 'ev:1', labels: { a: 'b' }, target: target() } });
    await svc.update({ image: { name: 'ev:1', labels: { c: 'd' } }, updateMask: ['labels.c'] });
    await svc.delete({ name: 'ev:1' });
    await Promise.race([reading, new Promise((r) => setTimeout(r, 5000))]);
    ac.abort();
    assert.deepEqual(seen, [
      { topic: '/images/create', type: 'containerd.services.images.v1.ImageCreate', payload: { name: 'ev:1', labels: { a: 'b' } } },
      { topic: '/images/update', type: 'containerd.services.images.v1.ImageUpdate', payload: { name: 'ev:1', labels: { a: 'b', c: 'd' } } },
      { topic: '/images/delete', type: 'containerd.services.images.v1.ImageDelete', payload: { name: 'ev:1' } },
    ]);
  });

  it('keeps a namespace holding images from being deleted', async () => {
    const c = d.connect('holder');
    await c.service(ImagesDefinition).create({ image: { name: 'h:1', target: target() } });
    await assert.rejects(c.service(NamespacesDefinition).delete({ name: 'holder' }), (e) => isFailedPrecondition(e) && /images/.test(String(e)));
    await c.service(ImagesDefinition).delete({ name: 'h:1' });
    await c.service(NamespacesDefinition).delete({ name: 'holder' });
  });
});

describe('ctr images commands against berthd', () => {
  it('ls, label, tag, rm behave as on containerd', async () => {
    const ns = 'ctrimg';
    const svc = d.connect(ns).service(ImagesDefinition);
    await svc.create({ image: { name: 'docker.io/library/x:1', labels: { b: '2', a: '1' }, target: target('e', 42) } });
    const ls = await ok(['images', 'ls'], ns);
    assert.match(ls.split('\n')[0]!, /^REF\s+TYPE\s+DIGEST\s+SIZE\s+PLATFORMS\s+LABELS\s*$/);
    assert.match(ls, new RegExp(`^docker.io/library/x:1\\s+application/vnd.oci.image.manifest.v1\\+json\\s+${dg('e')}\\s+\\S+ \\S+\\s+-\\s+a=1,b=2\\s*$`, 'm'));
    assert.equal(await ok(['images', 'ls', '-q'], ns), 'docker.io/library/x:1\n');
    const labelled = await ok(['images', 'label', 'docker.io/library/x:1', 'c=3'], ns);
    assert.deepEqual(labelled.trim().split(',').sort(), ['a=1', 'b=2', 'c=3']);
    assert.equal(await ok(['images', 'tag', 'docker.io/library/x:1', 'docker.io/library/x:2', 'docker.io/library/x:3'], ns), 'docker.io/library/x:2\ndocker.io/library/x:3\n');
    const again = await ctr(d.address, ['images', 'tag', 'docker.io/library/x:1', 'docker.io/library/x:2'], { namespace: ns });
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /already exists/);
    await ok(['images', 'tag', '--force', 'docker.io/library/x:1', 'docker.io/library/x:2'], ns);
    assert.equal(await ok(['images', 'rm', 'docker.io/library/x:2', 'docker.io/library/nope:1', 'docker.io/library/x:3'], ns), 'docker.io/library/x:2\ndocker.io/library/x:3\n');
    assert.deepEqual((await svc.list({})).images.map((i) => i.name), ['docker.io/library/x:1']);
    // berth prints the same table shape.
    const b = await berth(d.address, ['images', 'ls'], { namespace: ns });
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /^REF\s+TYPE\s+DIGEST\s+SIZE\s+PLATFORMS\s+LABELS/);
    assert.match(b.stdout, /a=1,b=2,c=3/);
    const bt = await berth(d.address, ['images', 'tag', 'docker.io/library/x:1', 'docker.io/library/x:9'], { namespace: ns });
    assert.equal(bt.stdout, 'docker.io/library/x:9\n', bt.stderr);
    const br = await berth(d.address, ['images', 'rm', 'docker.io/library/x:9', 'docker.io/library/nope:1'], { namespace: ns });
    assert.equal(br.code, 0, br.stderr);
    assert.equal(br.stdout, 'docker.io/library/x:9\n');
    assert.match(br.stderr, /docker.io\/library\/nope:1: image not found/);
  });
});

describe('gc', () => {
  it('images keep their blobs; rm --sync collects them', async () => {
    const ns = 'gcimg';
    const c = d.connect(ns);
    const cs = new ContentClient(c);
    const img = buildImage([baseLayer()]);
    const { childrenGCLabels } = await import('../../core/images/images.js');
    const { withLease } = await import('../../client/pull/lease.js');
    // Blobs as a pull leaves them (under a lease until the image exists): the manifest
    // references config and layers by label.
    await withLease(c, async () => {
      for (const l of img.layers) await cs.writeBlob(`layer-${l.desc.digest}`, l.blob, l.desc);
      await cs.writeBlob('config', img.config.bytes, img.config.desc);
      await cs.writeBlob('manifest', img.manifest.bytes, img.manifest.desc, childrenGCLabels([img.config.desc, ...img.layers.map((l) => l.desc)]));
      await c.service(ImagesDefinition).create({ image: { name: 'gc:1', target: img.manifest.desc } });
    });
    const gcOut = await berth(d.address, ['content', 'ls', '-q'], { namespace: ns });
    const before = gcOut.stdout.trim().split('\n').filter(Boolean).sort();
    assert.equal(before.length, 3, gcOut.stderr);
    // A collection keeps everything the image reaches.
    await c.service(ImagesDefinition).create({ image: { name: 'gc:tmp', target: target('f') } });
    await c.service(ImagesDefinition).delete({ name: 'gc:tmp', sync: true });
    for (const digest of before) assert.ok(await cs.stat(digest), `${digest} kept while the image exists`);
    const rm = await ctr(d.address, ['images', 'rm', '--sync', 'gc:1'], { namespace: ns });
    assert.equal(rm.code, 0, rm.stderr);
    for (const digest of before) assert.equal(await cs.stat(digest), undefined, `${digest} collected`);
  });
});
