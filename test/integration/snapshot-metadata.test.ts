/**
 * The namespaced metadata layer over real snapshotters: the behavioural suite through it,
 * then what only it does — backend keys and sequences, inherited labels, namespaces,
 * `containerd.io/snapshot.ref`, leases, Remove-then-collect, and containerd's messages.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AlreadyExistsError, codeOf, Code, messageOf } from '../../core/errdefs/errdefs.js';
import type { Labels } from '../../core/metadata/metadata.js';
import type { Mount } from '../../core/mount/types.js';
import type { RequestContext } from '../../core/namespaces/namespaces.js';
import { snapshotterSuite } from '../../core/snapshots/testsuite.js';
import { Kind, type SnapshotInfo, type SnapshotOptions, type Snapshotter, type Usage } from '../../core/snapshots/snapshotter.js';
import { openDatabase } from '../../plugins/metadata/sqlite/database.js';
import { attachLeases } from '../../plugins/metadata/sqlite/leases.js';
import { SqliteMetadata } from '../../plugins/metadata/sqlite/metadata.js';
import { attachSnapshotters } from '../../plugins/metadata/sqlite/snapshots.js';
import { NativeSnapshotter } from '../../plugins/snapshotter/native/native.js';
import { OverlaySnapshotter } from '../../plugins/snapshotter/overlayfs/overlay.js';
import { supportsIndex } from '../../plugins/snapshotter/overlayfs/support.js';

interface Call { op: string; args: unknown[] }

/** Forwards to a real snapshotter and records what the backend was asked. */
class Recording implements Snapshotter {
  calls: Call[] = [];
  /** Makes the next prepares answer ALREADY_EXISTS (a remote snapshotter that has the layer). */
  alreadyExists = false;
  /** While set, Cleanup waits for this promise (a slow directory removal). */
  cleanupGate?: Promise<void>;
  constructor(readonly inner: Snapshotter & { cleanup?: (ctx: RequestContext) => Promise<void> }) {}
  private log(op: string, ...args: unknown[]) { this.calls.push({ op, args }); }
  stat(ctx: RequestContext, key: string) { this.log('stat', key); return this.inner.stat(ctx, key); }
  update(ctx: RequestContext, info: Pick<SnapshotInfo, 'name' | 'labels'>, paths?: readonly string[]) { this.log('update', info, paths); return this.inner.update(ctx, info, paths); }
  usage(ctx: RequestContext, key: string): Promise<Usage> { this.log('usage', key); return this.inner.usage(ctx, key); }
  mounts(ctx: RequestContext, key: string): Promise<Mount[]> { this.log('mounts', key); return this.inner.mounts(ctx, key); }
  async prepare(ctx: RequestContext, key: string, parent: string, opts?: SnapshotOptions) {
    this.log('prepare', key, parent, opts?.labels);
    if (this.alreadyExists) throw new AlreadyExistsError(`snapshot ${key}`);
    return this.inner.prepare(ctx, key, parent, opts);
  }
  view(ctx: RequestContext, key: string, parent: string, opts?: SnapshotOptions) { this.log('view', key, parent, opts?.labels); return this.inner.view(ctx, key, parent, opts); }
  commit(ctx: RequestContext, name: string, key: string, opts?: SnapshotOptions) { this.log('commit', name, key, opts?.labels); return this.inner.commit(ctx, name, key, opts); }
  remove(ctx: RequestContext, key: string) { this.log('remove', key); return this.inner.remove(ctx, key); }
  walk(ctx: RequestContext, fn: (i: SnapshotInfo) => void | Promise<void>, filters?: readonly string[]) { this.log('walk', filters); return this.inner.walk(ctx, fn, filters); }
  async cleanup(ctx: RequestContext) { this.log('cleanup'); await this.cleanupGate; await this.inner.cleanup?.(ctx); }
  close() { return this.inner.close(); }
  ops() { return this.calls.map((c) => c.op); }
}

async function newMetadata(dir: string) {
  const path = join(dir, 'meta.db');
  const md = new SqliteMetadata(openDatabase(path), path);
  md.leases = attachLeases(md);
  return md;
}

// ---------------------------------------------------------------- the suite through the metadata layer

snapshotterSuite('metadata over overlayfs', async (root) => {
  const md = await newMetadata(root);
  const backend = new OverlaySnapshotter(join(root, 'overlayfs'), { indexOff: supportsIndex(), asyncRemove: true });
  attachSnapshotters(md, new Map([['overlayfs', backend]]));
  const sn = md.snapshotters.get('overlayfs')!;
  return { ...bind(sn), close: async () => { await sn.close(); md.close(); } };
}, { chainLength: 10 });

function bind(sn: Snapshotter): Snapshotter {
  return {
    stat: sn.stat.bind(sn), update: sn.update.bind(sn), usage: sn.usage.bind(sn), mounts: sn.mounts.bind(sn),
    prepare: sn.prepare.bind(sn), view: sn.view.bind(sn), commit: sn.commit.bind(sn), remove: sn.remove.bind(sn),
    walk: sn.walk.bind(sn), close: sn.close.bind(sn),
  };
}

// ---------------------------------------------------------------- metadata semantics

describe('metadata snapshotter', () => {
  let dir: string;
  let md: SqliteMetadata;
  let rec: Recording;
  let overlayRoot: string;
  let sn: Snapshotter;
  let gc: ReturnType<typeof attachSnapshotters>;
  /** A collection, and the backend pruning it schedules. */
  const collect = async () => {
    await md.collectGarbage();
    await gc.idle();
  };
  const ctx: RequestContext = { namespace: 'default' };
  const other: RequestContext = { namespace: 'other' };
  const root: SnapshotOptions = { labels: { 'containerd.io/gc.root': 'yes' } };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-snapmeta-'));
    md = await newMetadata(dir);
    overlayRoot = join(dir, 'overlayfs');
    rec = new Recording(new OverlaySnapshotter(overlayRoot, { indexOff: supportsIndex(), asyncRemove: true }));
    gc = attachSnapshotters(md, new Map<string, Snapshotter>([['overlayfs', rec], ['native', new NativeSnapshotter(join(dir, 'native'))]]));
    sn = md.snapshotters.get('overlayfs')!;
  });
  after(async () => {
    for (const s of md.snapshotters.values()) await s.close();
    md.close();
    await rm(dir, { recursive: true, force: true });
  });

  const err = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (e) {
      return { code: codeOf(e), message: messageOf(e) };
    }
    assert.fail('expected an error');
  };

  it('hands the backend <ns>/<seq>/<key>, advancing the sequence even when the backend fails', async () => {
    rec.calls = [];
    await sn.prepare(ctx, 'k1', '', root);
    await sn.prepare(ctx, 'p1', '', root);
    // Not committed: the backend refuses, but the number is used up.
    const e = await err(sn.prepare(ctx, 'x', 'p1'));
    assert.equal(e.code, Code.INVALID_ARGUMENT);
    assert.match(e.message, /parent "default\/2\/p1" is not committed snapshot/);
    await sn.commit(ctx, 'c1', 'p1', root);
    const prepares = rec.calls.filter((c) => c.op === 'prepare').map((c) => c.args[0]);
    assert.deepEqual(prepares, ['default/1/k1', 'default/2/p1', 'default/3/x']);
    assert.deepEqual(rec.calls.find((c) => c.op === 'commit')!.args.slice(0, 2), ['default/4/c1', 'default/2/p1']);
    // Another namespace has its own sequence and its own keys.
    rec.calls = [];
    await sn.prepare(other, 'k1', '', root);
    assert.equal(rec.calls[0]!.args[0], 'other/1/k1');
    assert.equal((await sn.stat(other, 'k1')).name, 'k1');
  });

  it('passes only inherited labels to the backend and merges them back on Stat', async () => {
    rec.calls = [];
    const labels: Labels = { 'containerd.io/gc.root': 'x', 'containerd.io/snapshot/remote': 'r', mine: 'm' };
    await sn.prepare(ctx, 'lab', '', { labels });
    assert.deepEqual(rec.calls[0]!.args[2], { 'containerd.io/snapshot/remote': 'r' });
    const st = await sn.stat(ctx, 'lab');
    assert.deepEqual(st.labels, labels);
    rec.calls = [];
    const up = await sn.update(ctx, { name: 'lab', labels: { mine: 'changed', 'containerd.io/snapshot/remote': '' } }, ['labels.mine', 'labels.containerd.io/snapshot/remote']);
    assert.deepEqual(up.labels, { 'containerd.io/gc.root': 'x', mine: 'changed' });
    const call = rec.calls.find((c) => c.op === 'update')!;
    assert.deepEqual(call.args[0], { name: 'default/5/lab', labels: {} });
    assert.deepEqual(call.args[1], ['labels.mine', 'labels.containerd.io/snapshot/remote'], 'the backend sees the original mask');
  });

  it('answers with containerd\'s errors', async () => {
    assert.deepEqual(await err(sn.prepare(ctx, 'k1', '')), { code: Code.ALREADY_EXISTS, message: 'snapshot "k1": already exists' });
    assert.deepEqual(await err(sn.prepare(ctx, 'n', 'nope')), { code: Code.NOT_FOUND, message: 'parent snapshot nope does not exist: not found' });
    assert.deepEqual(await err(sn.stat(ctx, 'nope')), { code: Code.NOT_FOUND, message: 'snapshot nope does not exist: not found' });
    assert.deepEqual(await err(sn.commit(ctx, 'c1', 'k1')), { code: Code.ALREADY_EXISTS, message: 'snapshot "c1": already exists' });
    assert.deepEqual(await err(sn.commit(ctx, 'cz', 'nope')), { code: Code.NOT_FOUND, message: 'snapshot nope does not exist: not found' });
    await sn.view(ctx, 'v1', 'c1', root);
    const notActive = await err(sn.commit(ctx, 'cv', 'v1'));
    assert.equal(notActive.code, Code.FAILED_PRECONDITION);
    assert.match(notActive.message, /^failed to commit snapshot: snapshot "default\/\d+\/v1" is not active: failed precondition$/);
    const mounts = await err(sn.mounts(ctx, 'c1'));
    assert.equal(mounts.code, Code.FAILED_PRECONDITION);
    assert.match(mounts.message, /not active or view/);
    assert.deepEqual(await err(sn.remove(ctx, 'c1')), { code: Code.FAILED_PRECONDITION, message: 'cannot remove snapshot with child: failed precondition' });
    assert.deepEqual(await err(sn.update(ctx, { name: '', labels: {} })), { code: Code.INVALID_ARGUMENT, message: 'invalid argument' });
    assert.deepEqual(await err(sn.update(ctx, { name: 'k1', labels: {} }, ['parent'])),
      { code: Code.INVALID_ARGUMENT, message: 'cannot update "parent" field on snapshot "k1": invalid argument' });
    assert.equal((await err(sn.stat({}, 'k1'))).code, Code.FAILED_PRECONDITION, 'namespace required');
    assert.equal((await err(sn.prepare(ctx, 'big', '', { labels: { k: 'x'.repeat(5000) } }))).code, Code.INVALID_ARGUMENT);
    await sn.remove(ctx, 'v1');
  });

  it('Walk asks the backend Stat per snapshot and filters the merged info', async () => {
    rec.calls = [];
    const names: string[] = [];
    await sn.walk(ctx, (i) => { names.push(i.name); }, ['kind==committed']);
    assert.deepEqual(names, ['c1']);
    assert.ok(rec.ops().every((op) => op === 'stat'));
    assert.ok(rec.ops().length >= 3);
  });

  it('Remove drops only the record; collection removes the backend snapshot, children first, then cleans up', async () => {
    await sn.prepare(ctx, 'gc-a', '');
    await sn.commit(ctx, 'gc-base', 'gc-a');
    await sn.prepare(ctx, 'gc-b', 'gc-base');
    await sn.commit(ctx, 'gc-top', 'gc-b');
    await sn.prepare(ctx, 'gc-kept', '', root);
    const backendKeys = async () => { const out: string[] = []; await rec.inner.walk({}, (i) => { out.push(i.name); }); return out; };
    const before = await backendKeys();
    assert.ok(before.some((k) => k.endsWith('/gc-top')) && before.some((k) => k.endsWith('/gc-base')));

    rec.calls = [];
    await collect();
    const removes = rec.calls.filter((c) => c.op === 'remove').map((c) => String(c.args[0]));
    // No gc.root on gc-base/gc-top: collected, child before parent; then Cleanup.
    assert.ok(removes.findIndex((k) => k.endsWith('/gc-top')) < removes.findIndex((k) => k.endsWith('/gc-base')), JSON.stringify(removes));
    assert.equal(rec.ops().at(-1), 'cleanup');
    await assert.rejects(sn.stat(ctx, 'gc-top'), (e) => codeOf(e) === Code.NOT_FOUND);
    assert.equal((await sn.stat(ctx, 'gc-kept')).kind, Kind.Active);

    // Remove: the metadata entry goes at once, the backend keeps it until the next collection.
    const kept = (await backendKeys()).find((k) => k.endsWith('/gc-kept'))!;
    await sn.remove(ctx, 'gc-kept');
    await assert.rejects(sn.stat(ctx, 'gc-kept'), (e) => codeOf(e) === Code.NOT_FOUND);
    assert.ok((await backendKeys()).includes(kept));
    const snapshotDirs = () => readdirSync(join(overlayRoot, 'snapshots')).filter((n) => !n.startsWith('spare-')).length;
    const dirsBefore = snapshotDirs();
    await collect();
    assert.ok(!(await backendKeys()).includes(kept));
    assert.ok(snapshotDirs() < dirsBefore, 'cleanup removed the directories');
  });

  it('serves a Prepare while the backend Cleanup of a collection is still removing directories', async () => {
    await sn.prepare(ctx, 'slow-gone', '');
    await sn.remove(ctx, 'slow-gone');
    let release!: () => void;
    rec.cleanupGate = new Promise((r) => { release = r; });
    try {
      await md.collectGarbage();
      // The collection's pruning is now parked in Cleanup; a Prepare must not queue behind it.
      while (rec.ops().at(-1) !== 'cleanup') await new Promise((r) => setImmediate(r));
      const outcome = await Promise.race([
        sn.prepare(ctx, 'during-cleanup', '').then(() => 'prepared'),
        new Promise((r) => setTimeout(r, 2000, 'blocked')),
      ]);
      assert.equal(outcome, 'prepared');
    } finally {
      release();
      rec.cleanupGate = undefined;
    }
    await gc.idle();
    await sn.remove(ctx, 'during-cleanup');
  });

  it('keeps snapshots referenced by a lease, a gc.ref label or a child', async () => {
    const lease = await md.leases.create(ctx, 'l1', {});
    const leased: RequestContext = { ...ctx, lease: lease.id };
    await sn.prepare(leased, 'by-lease', '');
    assert.deepEqual(await md.leases.listResources(ctx, 'l1'), [{ id: 'by-lease', type: 'snapshots/overlayfs' }]);
    await sn.commit(leased, 'by-lease-c', 'by-lease');
    assert.deepEqual(await md.leases.listResources(ctx, 'l1'), [{ id: 'by-lease-c', type: 'snapshots/overlayfs' }]);
    await sn.prepare(ctx, 'ref-target', '');
    await sn.prepare(ctx, 'referrer', '', { labels: { 'containerd.io/gc.root': '1', 'containerd.io/gc.ref.snapshot.overlayfs': 'ref-target' } });
    await collect();
    assert.equal((await sn.stat(ctx, 'by-lease-c')).kind, Kind.Committed);
    assert.equal((await sn.stat(ctx, 'ref-target')).kind, Kind.Active);
    assert.equal((await err(sn.prepare({ ...ctx, lease: 'missing' }, 'nolease', ''))).message, 'lease does not exist: not found');
    await md.leases.delete(ctx, 'l1');
    await collect();
    await assert.rejects(sn.stat(ctx, 'by-lease-c'), (e) => codeOf(e) === Code.NOT_FOUND);
  });

  it('records the target of a snapshot.ref when the backend already has it', async () => {
    const ref = 'sha256:1111111111111111111111111111111111111111111111111111111111111111';
    // The backend holds a committed layer carrying the ref label (unpacked in another namespace).
    await sn.prepare(other, 'extract-1', '', { labels: { 'containerd.io/snapshot.ref': ref } });
    await sn.commit(other, ref, 'extract-1', { labels: { 'containerd.io/snapshot.ref': ref, 'containerd.io/gc.root': 'x' } });
    rec.alreadyExists = true;
    try {
      const e = await err(sn.prepare(ctx, 'extract-2', '', { labels: { 'containerd.io/snapshot.ref': ref } }));
      assert.deepEqual(e, { code: Code.ALREADY_EXISTS, message: `target snapshot "${ref}" from snapshotter: already exists` });
    } finally {
      rec.alreadyExists = false;
    }
    const st = await sn.stat(ctx, ref);
    assert.equal(st.kind, Kind.Committed);
    assert.equal(st.labels['containerd.io/snapshot.ref'], ref);
    await assert.rejects(sn.stat(ctx, 'extract-2'), (e) => codeOf(e) === Code.NOT_FOUND);
    // Now the target exists here: ALREADY_EXISTS before the backend is asked.
    rec.calls = [];
    assert.equal((await err(sn.prepare(ctx, 'extract-3', '', { labels: { 'containerd.io/snapshot.ref': ref } }))).message,
      `target snapshot "${ref}": already exists`);
    assert.equal(rec.calls.length, 0);
    // Without the label, a backend ALREADY_EXISTS is unexpected: UNKNOWN.
    rec.alreadyExists = true;
    try {
      assert.equal((await err(sn.prepare(ctx, 'plain', ''))).code, Code.UNKNOWN);
    } finally {
      rec.alreadyExists = false;
    }
  });

  it('names the snapshotters a namespace still holds', async () => {
    const native = md.snapshotters.get('native')!;
    await native.prepare({ namespace: 'busy' }, 'n1', '');
    await sn.prepare({ namespace: 'busy' }, 'o1', '');
    assert.match(await err(Promise.resolve().then(() => md.namespaces.delete('busy'))).then((e) => e.message),
      /must be empty, but it still has snapshots on "native" snapshotter, snapshots on "overlayfs" snapshotter/);
    await native.remove({ namespace: 'busy' }, 'n1');
    await sn.remove({ namespace: 'busy' }, 'o1');
    md.namespaces.delete('busy');
    assert.ok(existsSync(join(dir, 'native', 'snapshots')));
  });
});
