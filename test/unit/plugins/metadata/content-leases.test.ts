/**
 * Namespaced content, leases and their garbage collection on a real SQLite file over a real
 * local content store: gc roots (gc.root labels, live leases, unexpired ingests), label
 * references (content and snapshots), flat leases, lease expiry, backend cleanup, sharing
 * policies, lease headers on writes, and namespaces held by blobs.
 */
import { test, describe, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../../../../plugins/metadata/sqlite/database.js';
import { SqliteMetadata } from '../../../../plugins/metadata/sqlite/metadata.js';
import { attachContent, type SqliteContentStore } from '../../../../plugins/metadata/sqlite/content.js';
import { attachLeases, randomLeaseId } from '../../../../plugins/metadata/sqlite/leases.js';
import { LocalContentStore } from '../../../../plugins/content/local/store.js';
import { Code, codeOf } from '../../../../core/errdefs/errdefs.js';
import type { GcNode, GcSource, Labels } from '../../../../core/metadata/metadata.js';
import type { LeaseManager } from '../../../../core/leases/leases.js';

const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const rfc3339 = (d: Date) => d.toISOString().replace(/\.\d+Z$/, 'Z');

async function rejectsWith(p: Promise<unknown>, code: number, re?: RegExp) {
  await assert.rejects(p, (err: Error) => {
    assert.equal(codeOf(err), code, `code of ${err.message}`);
    if (re) assert.match(err.message, re);
    return true;
  });
}

/** Stands in for the snapshot store: records which snapshot nodes gc reached. */
class FakeSnapshots implements GcSource {
  readonly kind = 'snapshot' as const;
  nodes: { ns: string; id: string; labels: Labels }[] = [];
  removed: string[] = [];
  *roots() {}
  *references(n: GcNode): Iterable<GcNode> {
    if (n.flat) return;
    const s = this.nodes.find((x) => x.ns === n.namespace && x.id === n.id);
    for (const [k, v] of Object.entries(s?.labels ?? {})) {
      if (k.startsWith('containerd.io/gc.ref.content')) yield { kind: 'content', namespace: n.namespace, id: v };
    }
  }
  *all(): Iterable<GcNode> {
    for (const s of this.nodes) yield { kind: 'snapshot', namespace: s.ns, id: s.id };
  }
  remove(nodes: GcNode[]) {
    for (const n of nodes) {
      this.removed.push(n.id);
      this.nodes = this.nodes.filter((x) => !(x.ns === n.namespace && x.id === n.id));
    }
  }
}

/** Stands in for images: each entry is a root pointing at a blob. */
class FakeImages implements GcSource {
  readonly kind = 'image' as const;
  targets: { ns: string; digest: string }[] = [];
  *roots(): Iterable<GcNode> {
    for (const t of this.targets) yield { kind: 'image', namespace: t.ns, id: t.digest };
  }
  *references(n: GcNode): Iterable<GcNode> {
    yield { kind: 'content', namespace: n.namespace, id: n.id };
  }
  *all(): Iterable<GcNode> {}
  remove() {}
}

describe('metadata content, leases and gc', () => {
  let dir: string;
  let md: SqliteMetadata;
  let backend: LocalContentStore;
  let content: SqliteContentStore;
  let leases: LeaseManager;
  let snapshots: FakeSnapshots;
  let images: FakeImages;

  const setup = async (shared = true) => {
    dir = mkdtempSync(join(tmpdir(), 'berth-meta-'));
    backend = await LocalContentStore.open(join(dir, 'content'));
    const path = join(dir, 'meta.db');
    md = new SqliteMetadata(openDatabase(path), path);
    leases = attachLeases(md);
    content = attachContent(md, backend, { shared });
    snapshots = new FakeSnapshots();
    images = new FakeImages();
    md.addGcSource(snapshots);
    md.addGcSource(images);
  };

  /** Writes `data` as a committed blob in `ns` (optionally with labels or under a lease). */
  const put = async (ns: string, data: Uint8Array, labels?: Labels, lease?: string) => {
    const w = await content.writer({ namespace: ns, lease }, { ref: `ref-${sha(data)}`, total: data.length, expected: sha(data) });
    // Like content.Copy: continue from what the writer already has (all of it for a shared blob).
    await w.write(data.subarray(w.status().offset));
    await w.commit(data.length, sha(data), labels);
    return sha(data);
  };
  const has = async (ns: string, d: string) => content.info({ namespace: ns }, d).then(() => true, () => false);
  const onDisk = (d: string) => existsSync(join(dir, 'content', 'blobs', 'sha256', d.slice(7)));

  beforeEach(() => setup());
  afterEach(() => {
    md.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('roots and references: gc.root blobs keep what their labels reference; the rest goes, on disk too', async () => {
    const child = await put('ns1', Buffer.from('child'));
    const grandchild = await put('ns1', Buffer.from('grandchild'));
    await content.update({ namespace: 'ns1' }, child, { 'containerd.io/gc.ref.content.x': grandchild }, ['labels.containerd.io/gc.ref.content.x']);
    const root = await put('ns1', Buffer.from('root'), {
      'containerd.io/gc.root': rfc3339(new Date()),
      'containerd.io/gc.ref.content.l.0': child,
      'containerd.io/gc.ref.snapshot.overlayfs': 'chain-1',
      'containerd.io/gc.ref.content.ignored-prefix-only': 'sha256:' + '0'.repeat(64),
    });
    const orphan = await put('ns1', Buffer.from('orphan'));
    snapshots.nodes.push({ ns: 'ns1', id: 'overlayfs/chain-1', labels: {} }, { ns: 'ns1', id: 'overlayfs/lonely', labels: {} });
    const stats = await md.collectGarbage();
    assert.ok(stats.removed >= 2);
    for (const d of [root, child, grandchild]) assert.ok(await has('ns1', d), `${d} kept`);
    assert.equal(await has('ns1', orphan), false);
    assert.equal(onDisk(orphan), false, 'orphan removed from the backend');
    assert.ok(onDisk(root));
    assert.deepEqual(snapshots.removed, ['overlayfs/lonely']);
  });

  test('a blob referenced from another namespace stays on disk while any namespace records it', async () => {
    const data = Buffer.from('shared-bytes');
    await put('a', data, { 'containerd.io/gc.root': 'x' });
    await put('b', data);
    await md.collectGarbage();
    assert.equal(await has('b', sha(data)), false);
    assert.ok(await has('a', sha(data)));
    assert.ok(onDisk(sha(data)));
  });

  test('a live lease keeps its resources; an expired lease is collected with what only it held', async () => {
    const ns = { namespace: 'ns1' };
    await leases.create(ns, 'live', { 'containerd.io/gc.expire': rfc3339(new Date(Date.now() + 3600_000)) });
    await leases.create(ns, 'expired', { 'containerd.io/gc.expire': rfc3339(new Date(Date.now() - 1000)) });
    const kept = await put('ns1', Buffer.from('kept'), undefined, 'live');
    const gone = await put('ns1', Buffer.from('gone'), undefined, 'expired');
    const ref = await put('ns1', Buffer.from('referenced-by-kept'));
    await content.update(ns, kept, { 'containerd.io/gc.ref.content': ref }, []);
    assert.deepEqual(await leases.listResources(ns, 'live'), [{ id: kept, type: 'content' }]);
    await md.collectGarbage();
    assert.ok(await has('ns1', kept));
    assert.ok(await has('ns1', ref), 'label references of leased content are followed');
    assert.equal(await has('ns1', gone), false);
    assert.equal(onDisk(gone), false);
    assert.deepEqual((await leases.list(ns, [])).map((l) => l.id), ['live']);
    // Deleting the lease releases what it held.
    await leases.delete(ns, 'live');
    await md.collectGarbage();
    assert.equal(await has('ns1', kept), false);
    assert.equal(await has('ns1', ref), false);
  });

  test('a flat lease keeps its resources but not what their labels reference', async () => {
    const ns = { namespace: 'ns1' };
    await leases.create(ns, 'flat', { 'containerd.io/gc.flat': 'true' });
    const target = await put('ns1', Buffer.from('target'));
    const holder = await put('ns1', Buffer.from('holder'), { 'containerd.io/gc.ref.content': target }, 'flat');
    await leases.addResource(ns, 'flat', { type: 'snapshots/overlayfs', id: 'snap' });
    snapshots.nodes.push({ ns: 'ns1', id: 'overlayfs/snap', labels: { 'containerd.io/gc.ref.content': target } });
    await md.collectGarbage();
    assert.ok(await has('ns1', holder));
    assert.equal(await has('ns1', target), false, 'references of flat resources are not followed');
    assert.deepEqual(snapshots.removed, []);
  });

  test('a node reached both flat and normally has its references followed', async () => {
    const ns = { namespace: 'ns1' };
    await leases.create(ns, 'flat', { 'containerd.io/gc.flat': '1' });
    const target = await put('ns1', Buffer.from('target'));
    const holder = await put('ns1', Buffer.from('holder'), { 'containerd.io/gc.ref.content.config': target }, 'flat');
    images.targets.push({ ns: 'ns1', digest: holder });
    await md.collectGarbage();
    assert.ok(await has('ns1', holder));
    assert.ok(await has('ns1', target));
  });

  test('unexpired ingests are roots (and keep their expected blob); expired ones are aborted', async () => {
    const ns = { namespace: 'ns1' };
    const w = await content.writer(ns, { ref: 'active-upload' });
    await w.write(Buffer.from('partial'));
    await w.close();
    const w2 = await content.writer(ns, { ref: 'stale-upload' });
    await w2.write(Buffer.from('stale'));
    await w2.close();
    md.db.prepare('UPDATE ingests SET expires_at = ? WHERE ref = ?').run(Date.now() - 1, 'stale-upload');
    await md.collectGarbage();
    assert.deepEqual((await content.listStatuses(ns, [])).map((s) => s.ref), ['active-upload']);
    assert.deepEqual(await backend.ingestRefs(), ['ns1/1/active-upload']);
    await rejectsWith(content.status(ns, 'stale-upload'), Code.NOT_FOUND);
  });

  test('leased ingests carry no expiry and live as long as the lease', async () => {
    const ns = { namespace: 'ns1' };
    await leases.create(ns, 'L', {});
    const w = await content.writer({ ...ns, lease: 'L' }, { ref: 'leased' });
    await w.write(Buffer.from('x'));
    await w.close();
    const row = md.db.prepare('SELECT expires_at FROM ingests WHERE ref = ?').get('leased') as { expires_at: number | null };
    assert.equal(row.expires_at, null);
    assert.deepEqual(await leases.listResources(ns, 'L'), [{ id: 'leased', type: 'ingests' }]);
    await md.collectGarbage();
    assert.equal((await content.status(ns, 'leased')).offset, 1);
    await leases.delete(ns, 'L');
    await md.collectGarbage();
    await rejectsWith(content.status(ns, 'leased'), Code.NOT_FOUND);
    assert.deepEqual(await backend.ingestRefs(), []);
  });

  test('writes under an unknown lease fail with NOT_FOUND "lease does not exist"', async () => {
    await rejectsWith(content.writer({ namespace: 'ns1', lease: 'nope' }, { ref: 'r' }), Code.NOT_FOUND, /lease does not exist/);
    assert.deepEqual(await backend.ingestRefs(), []);
  });

  test('shared policy: a blob committed elsewhere is linked without data', async () => {
    const data = randomBytes(5000);
    await put('a', data, { 'containerd.io/gc.root': 'x' });
    const w = await content.writer({ namespace: 'b' }, { ref: 'link', expected: sha(data) });
    const st = w.status();
    assert.equal(st.offset, data.length);
    assert.equal(st.total, data.length);
    await w.commit(data.length, sha(data));
    assert.equal((await content.info({ namespace: 'b' }, sha(data))).size, data.length);
    assert.deepEqual(await backend.ingestRefs(), []);
    // Committed in this namespace now: a new writer for it is ALREADY_EXISTS.
    await rejectsWith(content.writer({ namespace: 'b' }, { ref: 'again', expected: sha(data) }), Code.ALREADY_EXISTS);
  });

  test('shared policy: a wrong expected size is reported at commit', async () => {
    const data = randomBytes(100);
    await put('a', data, { 'containerd.io/gc.root': 'x' });
    const w = await content.writer({ namespace: 'b' }, { ref: 'link', expected: sha(data) });
    await rejectsWith(w.commit(99, sha(data)), Code.FAILED_PRECONDITION, /failed size validation/);
  });

  test('isolated policy: every namespace uploads the bytes itself', async () => {
    md.close();
    rmSync(dir, { recursive: true, force: true });
    await setup(false);
    const data = randomBytes(5000);
    await put('a', data, { 'containerd.io/gc.root': 'x' });
    const w = await content.writer({ namespace: 'b' }, { ref: 'copy', expected: sha(data) });
    assert.equal(w.status().offset, 0);
    await w.write(data);
    await w.commit(data.length, sha(data));
    assert.ok(await has('b', sha(data)));
  });

  test('namespaces holding blobs cannot be deleted; first write creates the namespace', async () => {
    const d = await put('fresh', Buffer.from('x'));
    assert.ok(md.namespaces.get('fresh'));
    assert.throws(() => md.namespaces.delete('fresh'), (err: Error) => codeOf(err) === Code.FAILED_PRECONDITION && /blobs/.test(err.message));
    await content.delete({ namespace: 'fresh' }, d);
    md.namespaces.delete('fresh');
  });

  test('content info, update masks, list filters, abort', async () => {
    const ns = { namespace: 'ns1' };
    const d = await put('ns1', Buffer.from('labelled'), { a: '1', b: '2' });
    let info = await content.update(ns, d, { a: '', c: '3' }, ['labels.a', 'labels.c']);
    assert.deepEqual(info.labels, { b: '2', c: '3' });
    info = await content.update(ns, d, { z: '9' }, ['labels']);
    assert.deepEqual(info.labels, { z: '9' });
    await rejectsWith(content.update(ns, d, {}, ['size']), Code.INVALID_ARGUMENT, /cannot update "size" field on content info/);
    await rejectsWith(content.update(ns, d, { k: 'x'.repeat(5000) }, []), Code.INVALID_ARGUMENT);
    const other = await put('ns1', Buffer.from('other'));
    const list = async (f: string[]) => {
      const out: string[] = [];
      for await (const i of content.list(ns, f)) out.push(i.digest);
      return out;
    };
    assert.deepEqual(await list(['labels.z==9']), [d]);
    assert.deepEqual(await list([`digest==${other}`]), [other]);
    assert.deepEqual((await list([])).sort(), [d, other].sort());
    assert.deepEqual(await list(['labels.z']), [d]);
    await rejectsWith(content.info({ namespace: 'elsewhere' }, d), Code.NOT_FOUND, /content digest/);
    await rejectsWith(content.read({ namespace: 'elsewhere' }, d), Code.NOT_FOUND);
    const w = await content.writer(ns, { ref: 'to-abort' });
    await w.close();
    await content.abort(ns, 'to-abort');
    await rejectsWith(content.abort(ns, 'to-abort'), Code.NOT_FOUND);
    assert.deepEqual(await backend.ingestRefs(), []);
  });

  test('leases: ids, labels, filters, resources and their validation', async () => {
    const ns = { namespace: 'ns1' };
    const gen = await leases.create(ns, '', { team: 'a' });
    assert.match(gen.id, /^\d+-[A-Za-z0-9_-]{4}$/);
    assert.match(randomLeaseId(), /^\d{1,9}-[A-Za-z0-9_-]{4}$/);
    await leases.create(ns, 'named', { team: 'b' });
    await rejectsWith(leases.create(ns, 'named', {}), Code.ALREADY_EXISTS, /lease "named"/);
    assert.deepEqual((await leases.list(ns, ['labels.team==b'])).map((l) => l.id), ['named']);
    assert.deepEqual((await leases.list(ns, ['id==named'])).map((l) => l.id), ['named']);
    assert.equal((await leases.list({ namespace: 'other' }, [])).length, 0);
    const dg = 'sha256:' + 'a'.repeat(64);
    await leases.addResource(ns, 'named', { type: 'content', id: dg });
    await leases.addResource(ns, 'named', { type: 'ingests', id: 'ing' });
    await leases.addResource(ns, 'named', { type: 'snapshots/overlayfs', id: 'k' });
    assert.deepEqual(await leases.listResources(ns, 'named'), [
      { id: dg, type: 'content' },
      { id: 'ing', type: 'ingests' },
      { id: 'k', type: 'snapshots/overlayfs' },
    ]);
    await rejectsWith(leases.addResource(ns, 'named', { type: 'content', id: 'bad' }), Code.INVALID_ARGUMENT, /invalid content resource id bad/);
    await rejectsWith(leases.addResource(ns, 'named', { type: 'snapshots', id: 'k' }), Code.INVALID_ARGUMENT);
    await rejectsWith(leases.addResource(ns, 'named', { type: 'images', id: 'x' }), Code.UNIMPLEMENTED, /not supported yet/);
    await rejectsWith(leases.addResource(ns, 'missing', { type: 'ingests', id: 'x' }), Code.NOT_FOUND, /lease "missing"/);
    await leases.deleteResource(ns, 'named', { type: 'ingests', id: 'ing' });
    assert.equal((await leases.listResources(ns, 'named')).length, 2);
    await leases.delete(ns, 'named');
    await rejectsWith(leases.delete(ns, 'named'), Code.NOT_FOUND, /lease "named"/);
    await rejectsWith(leases.listResources(ns, 'named'), Code.NOT_FOUND);
    await rejectsWith(leases.list({}, []), Code.FAILED_PRECONDITION, /namespace is required/);
  });

  test('gc notices: deletions and mutations reach onChange listeners', async () => {
    const seen: string[] = [];
    md.onChange((k) => seen.push(k));
    await leases.create({ namespace: 'n' }, 'l', {});
    await leases.delete({ namespace: 'n' }, 'l');
    assert.deepEqual(seen, ['mutation', 'deletion']);
  });
});
