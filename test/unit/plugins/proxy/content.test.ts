// ProxyContentStore (berthd's side of a content proxy plugin) against a content gRPC server in
// this process: berth's own Content service adapter (io.containerd.grpc.v1.content) over a
// local content store, on a unix socket. Covers the Write protocol (resume, truncate,
// chunking, commit checks), reads with offsets, info/update/list/delete, ingest status and
// abort, error classes, and namespaces reaching the peer while leases do not.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { ContentServiceRef, type ContentStore } from '../../../../core/content/content.js';
import { isAlreadyExists, isFailedPrecondition, isNotFound, isUnavailable } from '../../../../core/errdefs/errdefs.js';
import { silentLogger } from '../../../../core/log/logger.js';
import type { RequestContext } from '../../../../core/namespaces/namespaces.js';
import type { InitContext } from '../../../../core/plugin/types.js';
import { isGrpcPlugin } from '../../../../core/server/grpc-adapter.js';
import { listenGrpc, type RunningServer } from '../../../../core/server/grpc-server.js';
import { ProxyContentStore, PROXY_WRITE_CHUNK } from '../../../../plugins/content/proxy/proxy.js';
import { LocalContentStore } from '../../../../plugins/content/local/store.js';
import { contentGrpcPlugin } from '../../../../plugins/grpc/content/plugin.js';
import { Peer } from '../../../../plugins/proxy/peer.js';

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const readAll = async (r: Readable) => {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
};

/** Serves `store` with berth's Content gRPC adapter; records the headers of every call. */
export async function serveContent(store: ContentStore, address: string, seen: { namespace?: string; lease?: string }[] = []): Promise<RunningServer> {
  const recording: ContentStore = new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      return (ctx: RequestContext, ...args: unknown[]) => {
        seen.push({ namespace: ctx?.namespace, lease: ctx?.lease });
        return (v as (...a: unknown[]) => unknown).call(target, ctx, ...args);
      };
    },
  });
  const ctx = { log: silentLogger, service: async (ref: unknown) => (ref === ContentServiceRef ? recording : undefined) } as unknown as InitContext<Record<string, never>>;
  const plugin = await contentGrpcPlugin.init(ctx);
  assert.ok(isGrpcPlugin(plugin));
  return listenGrpc({
    address, uid: 0, gid: 0, maxRecvMessageSize: 16 << 20, maxSendMessageSize: 16 << 20, services: plugin.grpcServices(), log: silentLogger,
  });
}

let dir: string;
let local: LocalContentStore;
let server: RunningServer;
let proxy: ProxyContentStore;
const seen: { namespace?: string; lease?: string }[] = [];
const ctx: RequestContext = { namespace: 'default', lease: 'my-lease' };

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-proxy-content-'));
  local = await LocalContentStore.open(join(dir, 'store'));
  server = await serveContent(local, join(dir, 'content.sock'), seen);
  proxy = new ProxyContentStore('remote', new Peer('proxy content store "remote"', join(dir, 'content.sock')));
});

after(async () => {
  await proxy?.close();
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('ProxyContentStore', () => {
  it('ingests, commits, reads (with offset and length), and reports info', async () => {
    const data = Buffer.from('hello proxy content store\n'.repeat(100));
    const w = await proxy.writer(ctx, { ref: 'ref-1', total: data.length, expected: digestOf(data) });
    assert.equal(w.status().offset, 0);
    await w.write(data.subarray(0, 1000));
    assert.equal(w.status().offset, 1000);
    await w.write(data.subarray(1000));
    assert.equal(w.status().offset, data.length);
    await w.commit(data.length, digestOf(data), { 'containerd.io/gc.root': 'x' });
    assert.equal(await w.digest(), digestOf(data));

    const info = await proxy.info(ctx, digestOf(data));
    assert.equal(info.size, data.length);
    assert.deepEqual(info.labels, {}, 'a raw store keeps no labels (metadata does)');
    assert.deepEqual(await readAll(await proxy.read(ctx, digestOf(data))), data);
    assert.deepEqual(await readAll(await proxy.read(ctx, digestOf(data), 6, 5)), Buffer.from('proxy'));
    assert.deepEqual(await readAll(await proxy.read(ctx, digestOf(data), data.length - 3)), data.subarray(data.length - 3));

    // The namespace reaches the peer; this daemon's lease does not.
    assert.ok(seen.length > 0);
    for (const s of seen) assert.deepEqual(s, { namespace: 'default', lease: undefined });
  });

  it('splits big writes into bounded messages and resumes an ingest', async () => {
    const big = Buffer.alloc(PROXY_WRITE_CHUNK * 2 + 12345, 7);
    let w = await proxy.writer(ctx, { ref: 'ref-big', total: big.length });
    await w.write(big.subarray(0, PROXY_WRITE_CHUNK * 2 + 10));
    await w.close();
    const st = await proxy.status(ctx, 'ref-big');
    assert.equal(st.offset, PROXY_WRITE_CHUNK * 2 + 10);
    assert.ok((await proxy.listStatuses(ctx, ['ref==ref-big'])).some((s) => s.ref === 'ref-big'));

    w = await proxy.writer(ctx, { ref: 'ref-big', total: big.length });
    assert.equal(w.status().offset, PROXY_WRITE_CHUNK * 2 + 10, 'resumed where it stopped');
    await w.write(big.subarray(PROXY_WRITE_CHUNK * 2 + 10));
    await w.commit(big.length, digestOf(big));
    assert.equal((await proxy.info(ctx, digestOf(big))).size, big.length);
  });

  it('truncates, and refuses a commit with the wrong digest or size', async () => {
    const w = await proxy.writer(ctx, { ref: 'ref-trunc' });
    await w.write(Buffer.from('garbage'));
    await w.truncate();
    assert.equal(w.status().offset, 0);
    await w.write(Buffer.from('good'));
    await w.commit(4, digestOf(Buffer.from('good')));
    assert.deepEqual(await readAll(await proxy.read(ctx, digestOf(Buffer.from('good')))), Buffer.from('good'));

    const bad = await proxy.writer(ctx, { ref: 'ref-bad' });
    await bad.write(Buffer.from('abc'));
    await assert.rejects(bad.commit(3, digestOf(Buffer.from('xyz'))), isFailedPrecondition);
    const short = await proxy.writer(ctx, { ref: 'ref-short' });
    await short.write(Buffer.from('abc'));
    await assert.rejects(short.commit(4, ''), isFailedPrecondition);
    await proxy.abort(ctx, 'ref-short');
    await assert.rejects(proxy.status(ctx, 'ref-short'), isNotFound);
  });

  it('answers ALREADY_EXISTS for a committed expected digest', async () => {
    const good = Buffer.from('good');
    await assert.rejects(proxy.writer(ctx, { ref: 'again', expected: digestOf(good) }), isAlreadyExists);
  });

  it('passes update errors on, lists with filters, and deletes', async () => {
    const d = digestOf(Buffer.from('good'));
    await assert.rejects(proxy.update(ctx, d, { team: 'a' }, ['labels.team']), (e) => isFailedPrecondition(e) && /immutable content store/.test(String(e)));
    const listed: string[] = [];
    for await (const i of proxy.list(ctx, [`digest==${d}`])) listed.push(i.digest);
    assert.deepEqual(listed, [d]);
    await proxy.delete(ctx, d);
    await assert.rejects(proxy.info(ctx, d), isNotFound);
    await assert.rejects(proxy.read(ctx, d), isNotFound, 'a missing blob fails read() itself');
  });

  it('names the proxy when the peer is gone, from every kind of call', async () => {
    const sock = join(dir, 'gone.sock');
    const srv = await serveContent(local, sock);
    const p = new ProxyContentStore('gone', new Peer('proxy content store "gone"', sock));
    try {
      await p.info(ctx, digestOf(Buffer.from('hello proxy content store\n'.repeat(100))));
      await srv.close();
      const named = (e: unknown) => isUnavailable(e) && /proxy content store "gone" at .* is not available/.test(String(e));
      await assert.rejects(p.info(ctx, 'sha256:' + '0'.repeat(64)), named);
      await assert.rejects((async () => { for await (const _ of p.list(ctx, [])) void _; })(), named);
      await assert.rejects(p.read(ctx, 'sha256:' + '0'.repeat(64)), named);
      await assert.rejects(p.writer(ctx, { ref: 'r' }), named);
    } finally {
      await p.close();
    }
  });
});
