// ProxySnapshotter (berthd's side of a snapshot proxy plugin) against client/snapshotservice
// (the serving side) over a real unix socket, with an in-memory backend that records what
// reaches it: every method and its arguments, the snapshotter field ignored, namespaces
// forwarded, errors keeping their class, List batching, Cleanup, and a peer that goes away
// and comes back.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serveSnapshotter, LIST_BLOCK } from '../../../../client/snapshotservice/index.js';
import {
  AlreadyExistsError, Code, codeOf, FailedPreconditionError, isAlreadyExists, isFailedPrecondition, isNotFound, isNotImplemented, isUnavailable, NotFoundError,
} from '../../../../core/errdefs/errdefs.js';
import type { Mount } from '../../../../core/mount/types.js';
import type { RequestContext } from '../../../../core/namespaces/namespaces.js';
import type { RunningServer } from '../../../../core/server/grpc-server.js';
import { Kind, type SnapshotInfo, type SnapshotOptions, type Snapshotter, type Usage } from '../../../../core/snapshots/snapshotter.js';
import { Peer } from '../../../../plugins/proxy/peer.js';
import { ProxySnapshotter } from '../../../../plugins/snapshotter/proxy/proxy.js';

interface Call { method: string; namespace?: string; args: unknown[] }

/** Just enough snapshotter semantics to see what the wire carries. */
class MemorySnapshotter implements Snapshotter {
  readonly calls: Call[] = [];
  readonly infos = new Map<string, SnapshotInfo>();
  cleaned = 0;

  private rec(ctx: RequestContext, method: string, ...args: unknown[]) {
    this.calls.push({ method, namespace: ctx.namespace, args });
  }

  private mountsOf(key: string, ro: boolean): Mount[] {
    return [{ type: 'bind', source: `/snapshots/${key}`, options: [ro ? 'ro' : 'rw', 'rbind'] }];
  }

  private create(ctx: RequestContext, method: string, key: string, parent: string, opts: SnapshotOptions | undefined, kind: Kind): Mount[] {
    this.rec(ctx, method, key, parent, opts?.labels ?? {});
    if (this.infos.has(key)) throw new AlreadyExistsError(`snapshot ${key}`);
    if (parent) {
      const p = this.infos.get(parent);
      if (!p) throw new NotFoundError(`parent snapshot ${parent} does not exist`);
      if (p.kind !== Kind.Committed) throw new FailedPreconditionError(`parent ${parent} is not committed`);
    }
    const now = new Date();
    this.infos.set(key, { kind, name: key, parent, labels: { ...(opts?.labels ?? {}) }, createdAt: now, updatedAt: now });
    return this.mountsOf(key, kind === Kind.View);
  }

  async stat(ctx: RequestContext, key: string) {
    this.rec(ctx, 'stat', key);
    const i = this.infos.get(key);
    if (!i) throw new NotFoundError(`snapshot ${key}`);
    return i;
  }

  async update(ctx: RequestContext, info: Pick<SnapshotInfo, 'name' | 'labels'>, fieldpaths: readonly string[] = []) {
    this.rec(ctx, 'update', info.name, info.labels, [...fieldpaths]);
    const i = await this.stat({}, info.name);
    i.labels = { ...i.labels, ...info.labels };
    return i;
  }

  async usage(ctx: RequestContext, key: string): Promise<Usage> {
    this.rec(ctx, 'usage', key);
    await this.stat({}, key);
    return { size: 4096 * 1024 * 1024 * 3, inodes: 7 };
  }

  async mounts(ctx: RequestContext, key: string) {
    this.rec(ctx, 'mounts', key);
    const i = await this.stat({}, key);
    return this.mountsOf(key, i.kind === Kind.View);
  }

  async prepare(ctx: RequestContext, key: string, parent: string, opts?: SnapshotOptions) {
    return this.create(ctx, 'prepare', key, parent, opts, Kind.Active);
  }

  async view(ctx: RequestContext, key: string, parent: string, opts?: SnapshotOptions) {
    return this.create(ctx, 'view', key, parent, opts, Kind.View);
  }

  async commit(ctx: RequestContext, name: string, key: string, opts?: SnapshotOptions) {
    this.rec(ctx, 'commit', name, key, opts?.labels ?? {});
    const i = await this.stat({}, key);
    if (i.kind !== Kind.Active) throw new FailedPreconditionError(`snapshot ${key} is not active`);
    if (this.infos.has(name)) throw new AlreadyExistsError(`snapshot ${name}`);
    this.infos.delete(key);
    this.infos.set(name, { ...i, name, kind: Kind.Committed, labels: { ...i.labels, ...(opts?.labels ?? {}) } });
  }

  async remove(ctx: RequestContext, key: string) {
    this.rec(ctx, 'remove', key);
    await this.stat({}, key);
    if ([...this.infos.values()].some((i) => i.parent === key)) throw new FailedPreconditionError('cannot remove snapshot with child');
    this.infos.delete(key);
  }

  async walk(ctx: RequestContext, fn: (info: SnapshotInfo) => void | Promise<void>, filters: readonly string[] = []) {
    this.rec(ctx, 'walk', [...filters]);
    for (const i of [...this.infos.values()].sort((a, b) => a.name.localeCompare(b.name))) await fn(i);
  }

  async close() {}
}

/** The same without Cleanup, and one with it. */
class CleaningSnapshotter extends MemorySnapshotter {
  async cleanup(ctx: RequestContext) {
    this.calls.push({ method: 'cleanup', namespace: ctx.namespace, args: [] });
    this.cleaned++;
  }
}

let dir: string;
let backend: CleaningSnapshotter;
let server: RunningServer;
let sock: string;
let proxy: ProxySnapshotter;
const ns = (namespace: string): RequestContext => ({ namespace });

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-proxy-sn-'));
  sock = join(dir, 'snap.sock');
  backend = new CleaningSnapshotter();
  server = await serveSnapshotter(backend, sock);
  proxy = new ProxySnapshotter('custom', new Peer('proxy snapshotter "custom"', sock));
});

after(async () => {
  await proxy?.close();
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('ProxySnapshotter over client/snapshotservice', () => {
  it('round-trips prepare, mounts, commit, view, stat, update, usage, walk and remove', async () => {
    const m = await proxy.prepare(ns('team-a'), 'team-a/1/k', '', { labels: { 'containerd.io/snapshot.ref': 'sha256:x' } });
    assert.deepEqual(m, [{ type: 'bind', source: '/snapshots/team-a/1/k', options: ['rw', 'rbind'] }]);
    assert.deepEqual(await proxy.mounts(ns('team-a'), 'team-a/1/k'), m);
    await proxy.commit(ns('team-a'), 'team-a/2/c', 'team-a/1/k', { labels: { 'containerd.io/snapshot/x': 'y' } });
    const v = await proxy.view(ns('team-b'), 'team-b/3/v', 'team-a/2/c');
    assert.deepEqual(v[0]!.options, ['ro', 'rbind']);

    const st = await proxy.stat(ns('team-a'), 'team-a/2/c');
    assert.equal(st.kind, Kind.Committed);
    assert.equal(st.name, 'team-a/2/c');
    assert.equal(st.parent, '');
    assert.deepEqual(st.labels, { 'containerd.io/snapshot.ref': 'sha256:x', 'containerd.io/snapshot/x': 'y' });
    assert.ok(st.createdAt instanceof Date && st.createdAt.getTime() > 0);
    assert.equal((await proxy.stat(ns('team-b'), 'team-b/3/v')).kind, Kind.View);

    const up = await proxy.update(ns('team-a'), { name: 'team-a/2/c', labels: { 'containerd.io/snapshot/z': '1' } }, ['labels.containerd.io/snapshot/z']);
    assert.equal(up.labels['containerd.io/snapshot/z'], '1');
    assert.deepEqual(await proxy.usage(ns('team-a'), 'team-a/2/c'), { size: 4096 * 1024 * 1024 * 3, inodes: 7 }, 'int64 sizes survive');

    const seen: string[] = [];
    await proxy.walk(ns('team-a'), (i) => { seen.push(`${i.name}<${i.parent}`); }, ['kind==committed']);
    assert.deepEqual(seen, ['team-a/2/c<', 'team-b/3/v<team-a/2/c']);

    await proxy.remove(ns('team-b'), 'team-b/3/v');
    await proxy.remove(ns('team-a'), 'team-a/2/c');
    assert.equal(backend.infos.size, 0);

    // What reached the backend: the caller's namespace on each call, arguments intact.
    const byMethod = (m: string) => backend.calls.filter((c) => c.method === m);
    assert.deepEqual(byMethod('prepare')[0], { method: 'prepare', namespace: 'team-a', args: ['team-a/1/k', '', { 'containerd.io/snapshot.ref': 'sha256:x' }] });
    assert.deepEqual(byMethod('view')[0], { method: 'view', namespace: 'team-b', args: ['team-b/3/v', 'team-a/2/c', {}] });
    assert.deepEqual(byMethod('commit')[0], { method: 'commit', namespace: 'team-a', args: ['team-a/2/c', 'team-a/1/k', { 'containerd.io/snapshot/x': 'y' }] });
    assert.deepEqual(byMethod('update')[0]!.args, ['team-a/2/c', { 'containerd.io/snapshot/z': '1' }, ['labels.containerd.io/snapshot/z']]);
    assert.deepEqual(byMethod('walk')[0], { method: 'walk', namespace: 'team-a', args: [['kind==committed']] });
    assert.deepEqual(byMethod('remove').map((c) => c.namespace), ['team-b', 'team-a']);
  });

  it('sends no namespace when the caller has none (garbage collection)', async () => {
    backend.calls.length = 0;
    await proxy.walk({}, () => undefined);
    assert.equal(backend.calls[0]!.namespace, undefined);
  });

  it('keeps the error classes of the peer', async () => {
    await assert.rejects(proxy.stat(ns('x'), 'missing'), (e) => isNotFound(e) && /snapshot missing: not found/.test(String(e)));
    await proxy.prepare(ns('x'), 'dup', '');
    await assert.rejects(proxy.prepare(ns('x'), 'dup', ''), isAlreadyExists);
    await assert.rejects(proxy.prepare(ns('x'), 'child', 'dup'), isFailedPrecondition);
    await assert.rejects(proxy.view(ns('x'), 'child', 'nope'), (e) => isNotFound(e) && /parent snapshot nope does not exist/.test(String(e)));
    await proxy.remove(ns('x'), 'dup');
  });

  it('streams List in blocks and walks every one', async () => {
    const n = LIST_BLOCK * 2 + 17;
    for (let i = 0; i < n; i++) await backend.prepare({}, `bulk-${String(i).padStart(4, '0')}`, '');
    let count = 0;
    await proxy.walk(ns('x'), () => { count++; });
    assert.equal(count, n);
    for (let i = 0; i < n; i++) await backend.remove({}, `bulk-${String(i).padStart(4, '0')}`);
  });

  it('reaches the backend Cleanup, and reports UNIMPLEMENTED for backends without one', async () => {
    await proxy.cleanup({});
    assert.equal(backend.cleaned, 1);
    const plainSock = join(dir, 'plain.sock');
    const plain = await serveSnapshotter(new MemorySnapshotter(), plainSock);
    const p = new ProxySnapshotter('plain', new Peer('proxy snapshotter "plain"', plainSock));
    try {
      await assert.rejects(p.cleanup({}), (e) => isNotImplemented(e) && /snapshotter does not implement Cleanup method/.test(String(e)));
    } finally {
      await p.close();
      await plain.close();
    }
  });

  it('fails fast with an error naming the proxy while the peer is down, and recovers when it is back', async () => {
    const sock2 = join(dir, 'flaky.sock');
    const flaky = new MemorySnapshotter();
    let srv = await serveSnapshotter(flaky, sock2);
    const p = new ProxySnapshotter('flaky', new Peer('proxy snapshotter "flaky"', sock2));
    try {
      await p.prepare(ns('default'), 'a', '');
      await srv.close();

      const started = Date.now();
      const err = await p.stat(ns('default'), 'a').then(() => undefined, (e: unknown) => e);
      assert.ok(isUnavailable(err), `expected UNAVAILABLE, got ${String(err)}`);
      assert.match(String(err), new RegExp(`proxy snapshotter "flaky" at ${sock2.replace(/[/.-]/g, '\\$&')} is not available`));
      assert.ok(Date.now() - started < 2000, 'no connect timeout against a dead peer');
      // Still down: still the same clear error, still fast.
      await assert.rejects(p.mounts(ns('default'), 'a'), (e) => codeOf(e) === Code.UNAVAILABLE && /"flaky"/.test(String(e)));

      srv = await serveSnapshotter(flaky, sock2);
      const back = Date.now();
      assert.equal((await p.stat(ns('default'), 'a')).name, 'a');
      assert.ok(Date.now() - back < 4000, 'reconnects within the backoff bound');
    } finally {
      await p.close();
      await srv.close();
    }
  });

  it('boots without the peer and connects on first use', async () => {
    const sock3 = join(dir, 'late.sock');
    const p = new ProxySnapshotter('late', new Peer('proxy snapshotter "late"', sock3));
    try {
      await assert.rejects(p.stat(ns('default'), 'x'), (e) => isUnavailable(e) && /"late" .* is not available: nothing is listening on the socket/.test(String(e)));
      const srv = await serveSnapshotter(new MemorySnapshotter(), sock3);
      try {
        await assert.rejects(p.stat(ns('default'), 'x'), isNotFound);
      } finally {
        await srv.close();
      }
    } finally {
      await p.close();
    }
  });
});
