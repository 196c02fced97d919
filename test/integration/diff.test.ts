// The Diff service on a real berthd with real snapshots: Apply onto overlayfs (straight into
// the upperdir) and native (bind) snapshots, crafted layers that try to escape the snapshot, and
// Diff/Compare writing a layer into content that applies back to the same tree — also through
// the real `ctr snapshots diff`.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { ctr, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { DiffDefinition } from '../../api/gen/services/diff/v1/diff.js';
import { SnapshotsDefinition } from '../../api/gen/services/snapshots/v1/snapshots.js';
import { ContentClient } from '../../client/images/content.js';
import { withLease } from '../../client/pull/lease.js';
import type { Connection } from '../../client/connection.js';
import { withTempMount } from '../../core/mount/temp.js';
import { isNotImplemented } from '../../core/errdefs/errdefs.js';
import { buildLayer, compress, layerMediaType, sha256, type BuiltLayer, type TarSpec } from '../unit/client/images/fixtures.js';
import { buildTar } from '../unit/plugins/differ/walking/archive/helpers.js';

let d: TestDaemon;
before(async () => { d = await startDaemon(); });
after(async () => { await d?.dispose(); });


async function putLayer(conn: Connection, layer: Pick<BuiltLayer, 'blob' | 'desc'>): Promise<void> {
  await new ContentClient(conn).writeBlob(`layer-${layer.desc.digest}`, layer.blob, layer.desc, { 'containerd.io/gc.root': 'test' });
}

async function applyOn(conn: Connection, snapshotter: string, key: string, parent: string, layer: BuiltLayer) {
  const sn = conn.service(SnapshotsDefinition);
  const { mounts } = await sn.prepare({ snapshotter, key, parent, labels: { 'containerd.io/gc.root': 'test' } });
  const res = await conn.service(DiffDefinition).apply({ diff: layer.desc, mounts });
  return { res: res.applied!, mounts };
}

/** Reads a committed snapshot's tree through a view. */
async function readTree(conn: Connection, snapshotter: string, parent: string, fn: (root: string) => Promise<void>): Promise<void> {
  const sn = conn.service(SnapshotsDefinition);
  const key = `view-${Math.random().toString(36).slice(2)}`;
  const { mounts } = await sn.view({ snapshotter, key, parent, labels: { 'containerd.io/gc.root': 'x' } });
  try {
    await withTempMount(mounts.map((m) => ({ ...m, target: m.target || undefined })), fn);
  } finally {
    await sn.remove({ snapshotter, key });
  }
}

const base: TarSpec[] = [
  { path: 'etc/', type: 'Directory' },
  { path: 'etc/os-release', data: 'ID=test\n' },
  { path: 'data/', type: 'Directory' },
  { path: 'data/gone.txt', data: 'gone' },
  { path: 'data/kept.txt', data: 'kept' },
  { path: 'data/dir/', type: 'Directory' },
  { path: 'data/dir/old.txt', data: 'old' },
  { path: 'data/dir/sub/', type: 'Directory' },
  { path: 'data/dir/sub/deep', data: 'deep' },
];
const second: TarSpec[] = [
  { path: 'data/', type: 'Directory' },
  { path: 'data/.wh.gone.txt' },
  { path: 'data/dir/', type: 'Directory' },
  { path: 'data/dir/.wh..wh..opq' },
  { path: 'data/dir/new.txt', data: 'new' },
];

for (const snapshotter of ['overlayfs', 'native']) {
  describe(`Diff.Apply on ${snapshotter}`, () => {
    it('applies a stack of layers with whiteouts and an opaque directory', async () => {
      const conn = d.connect(`apply-${snapshotter}`);
      const l1 = buildLayer(base, 'gzip');
      const l2 = buildLayer(second, 'zstd');
      await putLayer(conn, l1);
      await putLayer(conn, l2);
      const sn = conn.service(SnapshotsDefinition);
      const a = await applyOn(conn, snapshotter, 'k1', '', l1);
      assert.deepEqual(a.res, { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: l1.diffID, size: l1.raw.length, annotations: {} });
      await sn.commit({ snapshotter, name: 'c1', key: 'k1', labels: { 'containerd.io/gc.root': 'test' } });
      const b = await applyOn(conn, snapshotter, 'k2', 'c1', l2);
      assert.equal(b.res.digest, l2.diffID);
      if (snapshotter === 'overlayfs') assert.equal(b.mounts[0]?.type, 'overlay');
      await sn.commit({ snapshotter, name: 'c2', key: 'k2', labels: { 'containerd.io/gc.root': 'test' } });
      await readTree(conn, snapshotter, 'c2', async (root) => {
        assert.deepEqual((await fsp.readdir(join(root, 'data'))).sort(), ['dir', 'kept.txt']);
        assert.deepEqual(await fsp.readdir(join(root, 'data/dir')), ['new.txt']);
        assert.equal(await fsp.readFile(join(root, 'etc/os-release'), 'utf8'), 'ID=test\n');
      });
      await readTree(conn, snapshotter, 'c1', async (root) => {
        assert.deepEqual((await fsp.readdir(join(root, 'data'))).sort(), ['dir', 'gone.txt', 'kept.txt'], 'the parent is unchanged');
      });
    });

    it('keeps crafted entries inside the snapshot', async () => {
      const conn = d.connect(`escape-${snapshotter}`);
      const outside = await fsp.mkdtemp(join(tmpdir(), 'berth-outside-'));
      await fsp.writeFile(join(outside, 'victim'), 'untouched');
      try {
        const evil = buildLayer([
          { path: '../../../../escape-dotdot', data: 'x' },
          { path: `${outside}/victim`, data: 'abs' },
          { path: 'lnk', type: 'SymbolicLink', linkpath: outside },
          { path: 'lnk/victim', data: 'via-symlink' },
          { path: 'lnk/newfile', data: 'via-symlink' },
        ]);
        await putLayer(conn, evil);
        const { res } = await applyOn(conn, snapshotter, 'evil', '', evil);
        assert.equal(res.digest, evil.diffID);
        assert.deepEqual(await fsp.readdir(outside), ['victim']);
        assert.equal(await fsp.readFile(join(outside, 'victim'), 'utf8'), 'untouched');
        const hard = buildLayer([{ path: 'h', type: 'Link', linkpath: `../../../../../../../..${outside}/victim` }]);
        await putLayer(conn, hard);
        await assert.rejects(applyOn(conn, snapshotter, 'evil2', '', hard));
        assert.equal(await fsp.readFile(join(outside, 'victim'), 'utf8'), 'untouched');
        const st = await fsp.stat(join(outside, 'victim'));
        assert.equal(st.nlink, 1, 'no hard link to the outside file was made');
      } finally {
        await fsp.rm(outside, { recursive: true, force: true });
      }
    });
  });
}

describe('Diff.Diff (compare)', () => {
  it('writes the changes as a gzip layer with its uncompressed label, and it applies back', async () => {
    const conn = d.connect('compare');
    const sn = conn.service(SnapshotsDefinition);
    const l1 = buildLayer(base, 'gzip');
    await putLayer(conn, l1);
    await applyOn(conn, 'overlayfs', 'b', '', l1);
    await sn.commit({ snapshotter: 'overlayfs', name: 'base', key: 'b', labels: { 'containerd.io/gc.root': 'test' } });
    const { mounts: upper } = await sn.prepare({ snapshotter: 'overlayfs', key: 'work', parent: 'base', labels: { 'containerd.io/gc.root': 'x' } });
    await withTempMount(upper.map((m) => ({ ...m, target: undefined })), async (root) => {
      await fsp.rm(join(root, 'data/gone.txt'));
      await fsp.writeFile(join(root, 'data/kept.txt'), 'changed');
      await fsp.mkdir(join(root, 'new'));
      await fsp.writeFile(join(root, 'new/file'), 'fresh');
    });
    const { mounts: lower } = await sn.view({ snapshotter: 'overlayfs', key: 'lower-view', parent: 'base', labels: { 'containerd.io/gc.root': 'x' } });
    const cs = new ContentClient(conn);
    const desc = await withLease(conn, async () => {
      const r = await conn.service(DiffDefinition).diff({ left: lower, right: upper, labels: { mine: 'yes' } });
      const desc = r.diff!;
      assert.equal(desc.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
      const info = await cs.info(desc.digest);
      assert.equal(info.size, desc.size);
      assert.equal(info.labels.mine, 'yes');
      const bytes = await cs.readBlob(desc);
      assert.equal(sha256(bytes), desc.digest);
      const raw = gunzipSync(bytes);
      assert.equal(info.labels['containerd.io/uncompressed'], sha256(raw));
      const names = execFileSync('tar', ['-t'], { input: raw }).toString().split('\n').filter(Boolean).sort();
      assert.deepEqual(names, ['data/', 'data/.wh.gone.txt', 'data/kept.txt', 'new/', 'new/file']);
      // Uncompressed media type, and refusal of unsupported ones.
      const plain = await conn.service(DiffDefinition).diff({ left: lower, right: upper, mediaType: 'application/vnd.oci.image.layer.v1.tar' });
      assert.equal(plain.diff?.digest, sha256(raw));
      await assert.rejects(conn.service(DiffDefinition).diff({ left: lower, right: upper, mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd' }), isNotImplemented);
      // Apply the diff on a fresh child of base: same tree as the work snapshot.
      await cs.update(desc.digest, { 'containerd.io/gc.root': 'x' }, ['labels.containerd.io/gc.root']);
      const { mounts } = await sn.prepare({ snapshotter: 'overlayfs', key: 'replay', parent: 'base', labels: { 'containerd.io/gc.root': 'x' } });
      const applied = await conn.service(DiffDefinition).apply({ diff: desc, mounts });
      assert.equal(applied.applied?.digest, sha256(raw));
      return desc;
    });
    await sn.commit({ snapshotter: 'overlayfs', name: 'replayed', key: 'replay', labels: { 'containerd.io/gc.root': 'test' } });
    await readTree(conn, 'overlayfs', 'replayed', async (root) => {
      assert.deepEqual((await fsp.readdir(join(root, 'data'))).sort(), ['dir', 'kept.txt']);
      assert.equal(await fsp.readFile(join(root, 'data/kept.txt'), 'utf8'), 'changed');
      assert.equal(await fsp.readFile(join(root, 'new/file'), 'utf8'), 'fresh');
    });
    assert.ok(desc.size > 0);
    await sn.remove({ snapshotter: 'overlayfs', key: 'lower-view' });
  });

  it('serves the real `ctr snapshots diff`', async () => {
    const ns = 'ctrdiff';
    const conn = d.connect(ns);
    const raw = buildTar([{ path: 'a.txt', data: 'A' }]);
    const l = { blob: compress(raw, 'gzip'), desc: { mediaType: layerMediaType('gzip'), digest: sha256(compress(raw, 'gzip')), size: compress(raw, 'gzip').length } };
    await putLayer(conn, l);
    const sn = conn.service(SnapshotsDefinition);
    const { mounts } = await sn.prepare({ snapshotter: 'overlayfs', key: 'p', parent: '', labels: { 'containerd.io/gc.root': 'x' } });
    await conn.service(DiffDefinition).apply({ diff: l.desc, mounts });
    await sn.commit({ snapshotter: 'overlayfs', name: 'p1', key: 'p', labels: { 'containerd.io/gc.root': 'test' } });
    const { mounts: m2 } = await sn.prepare({ snapshotter: 'overlayfs', key: 'active', parent: 'p1', labels: { 'containerd.io/gc.root': 'x' } });
    await withTempMount(m2.map((m) => ({ ...m, target: undefined })), async (root) => {
      await fsp.writeFile(join(root, 'b.txt'), 'B');
      await fsp.rm(join(root, 'a.txt'));
    });
    const out = join(tmpdir(), `berth-ctrdiff-${process.pid}.tgz`);
    const code = Number(execFileSync('sh', ['-c', `ctr -a ${d.address} -n ${ns} snapshots diff active > ${out}; echo $?`]).toString().trim());
    assert.equal(code, 0);
    const names = execFileSync('tar', ['-tzf', out]).toString().split('\n').filter(Boolean).sort();
    await fsp.rm(out, { force: true });
    assert.deepEqual(names, ['.wh.a.txt', 'b.txt']);
    const missing = await ctr(d.address, ['snapshots', 'ls'], { namespace: ns });
    assert.doesNotMatch(missing.stdout, /parent-view/, 'ctr removed its temporary views');
  });
});
