// berthd's gRPC server (core/server/grpc-server.ts, grpc-call.ts) against the grpc-js client over
// a real unix socket: unary, server-streaming and bidirectional calls, statuses (errdefs codes,
// non-ASCII messages, unknown methods, undecodable requests, size limits), the client's deadline
// and cancellation reaching the handler's signal, namespace headers, and a graceful close.
import assert from 'node:assert/strict';
import { connect } from 'node:http2';
import { connect as connectSocket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { ContentService, WriteAction } from '../../../api/gen/services/content/v1/content.js';
import { EventsService } from '../../../api/gen/services/events/v1/events.js';
import { VersionService } from '../../../api/gen/services/version/v1/version.js';
import { NotFoundError } from '../../../core/errdefs/errdefs.js';
import { silentLogger } from '../../../core/log/logger.js';
import { implement } from '../../../core/server/grpc-adapter.js';
import { listenGrpc, type RunningServer } from '../../../core/server/grpc-server.js';

let dir: string;
let server: RunningServer;
let client: grpc.Client;
let versionError: Error | undefined;
const namespaces: (string | undefined)[] = [];
let subscriptionAborted: Promise<void>;
let markAborted: () => void;

const unary = <Res>(def: { path: string; requestSerialize: (v: any) => Buffer; responseDeserialize: (b: Buffer) => Res }, req: unknown, md = new grpc.Metadata(), options: grpc.CallOptions = {}) =>
  new Promise<Res>((resolve, reject) => {
    client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, req, md, options, (err, res) => (err ? reject(err) : resolve(res!)));
  });

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-grpc-server-'));
  subscriptionAborted = new Promise<void>((resolve) => { markAborted = resolve; });
  const services = [
    implement(VersionService, {
      version: async (_req, ctx) => {
        namespaces.push(ctx.namespace);
        if (ctx.namespace === 'slow') await new Promise((resolve) => setTimeout(resolve, 150));
        if (versionError) throw versionError;
        return { version: 'v-test', revision: 'r' };
      },
    }),
    implement(EventsService, {
      subscribe: async (_req, ctx, send) => {
        for (let i = 0; i < 3; i++) await send({ timestamp: undefined, namespace: 'n', topic: `/t/${i}`, event: undefined });
        if (ctx.namespace === 'endless') {
          await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => { markAborted(); resolve(); }));
        }
      },
    }),
    implement(ContentService, {
      write: async (call) => {
        let total = 0;
        for await (const req of call.requests) {
          total += req.data.length;
          await call.send({ action: req.action, startedAt: undefined, updatedAt: undefined, offset: total, total, digest: '' });
        }
      },
    }),
  ];
  server = await listenGrpc({ address: join(dir, 'grpc.sock'), uid: 0, gid: 0, maxRecvMessageSize: 1 << 20, maxSendMessageSize: 1 << 20, services, log: silentLogger });
  client = new grpc.Client(`unix://${server.address}`, grpc.credentials.createInsecure());
});

after(async () => {
  client?.close();
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('gRPC server', () => {
  it('serves a unary call and passes the namespace header', async () => {
    const md = new grpc.Metadata();
    md.set('containerd-namespace', 'ns-1');
    const res = await unary(VersionService.version, {}, md);
    assert.equal(res.version, 'v-test');
    assert.equal(namespaces.at(-1), 'ns-1');
  });

  it('turns errdefs errors into their codes, with non-ASCII messages intact', async () => {
    versionError = new NotFoundError('image « ünïcode » 100%');
    try {
      await assert.rejects(unary(VersionService.version, {}), (e: grpc.ServiceError) => {
        assert.equal(e.code, grpc.status.NOT_FOUND);
        assert.match(e.details, /image « ünïcode » 100%/);
        return true;
      });
    } finally {
      versionError = undefined;
    }
  });

  it('answers an unknown method with UNIMPLEMENTED', async () => {
    const def = { ...VersionService.version, path: '/containerd.services.version.v1.Version/Nope' };
    await assert.rejects(unary(def, {}), { code: grpc.status.UNIMPLEMENTED });
    const service = { ...VersionService.version, path: '/no.such.Service/Version' };
    await assert.rejects(unary(service, {}), { code: grpc.status.UNIMPLEMENTED });
  });

  it('answers an undecodable request with INTERNAL and a too large one with RESOURCE_EXHAUSTED', async () => {
    const raw = { ...VersionService.version, requestSerialize: (b: Buffer) => b };
    await assert.rejects(unary(raw, Buffer.from([0xff, 0xff, 0xff])), (e: grpc.ServiceError) => e.code === grpc.status.INTERNAL && /Error deserializing request/.test(e.details));
    await assert.rejects(unary(raw, Buffer.alloc((1 << 20) + 1)), { code: grpc.status.RESOURCE_EXHAUSTED });
    assert.equal((await unary(VersionService.version, {})).version, 'v-test', 'the server goes on');
  });

  it('survives clients that go away before the answer', async () => {
    const md = new grpc.Metadata();
    md.set('containerd-namespace', 'slow');
    await assert.rejects(unary(VersionService.version, {}, md, { deadline: Date.now() + 30 }), { code: grpc.status.DEADLINE_EXCEEDED });
    const call = client.makeUnaryRequest(VersionService.version.path, VersionService.version.requestSerialize, VersionService.version.responseDeserialize, {}, md, () => undefined);
    setTimeout(() => call.cancel(), 20);
    await new Promise((resolve) => setTimeout(resolve, 250));
    assert.equal((await unary(VersionService.version, {})).version, 'v-test');
  });

  it('streams server responses to the end', async () => {
    const topics: string[] = [];
    const def = EventsService.subscribe;
    const stream = client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, { filters: [] }, new grpc.Metadata());
    for await (const env of stream) topics.push((env as { topic: string }).topic);
    assert.deepEqual(topics, ['/t/0', '/t/1', '/t/2']);
  });

  it('aborts the handler when the client cancels, and ends a call at its deadline', async () => {
    const def = EventsService.subscribe;
    const md = new grpc.Metadata();
    md.set('containerd-namespace', 'endless');
    const stream = client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, { filters: [] }, md);
    let received = 0;
    stream.on('error', () => undefined);
    await new Promise<void>((resolve) => stream.on('data', () => { if (++received === 3) resolve(); }));
    stream.cancel();
    await subscriptionAborted;

    const timed = client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, { filters: [] }, md, { deadline: Date.now() + 200 });
    timed.on('data', () => undefined);
    const err = await new Promise<grpc.ServiceError>((resolve) => timed.on('error', resolve));
    assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED);
  });

  it('carries a bidirectional call message by message', async () => {
    const def = ContentService.write;
    const call = client.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, new grpc.Metadata());
    const offsets: number[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      call.on('data', (r: { offset: number }) => offsets.push(r.offset));
      call.on('end', resolve);
      call.on('error', reject);
    });
    for (const size of [10, 300_000, 0, 5]) call.write({ action: WriteAction.WRITE, ref: 'r', total: 0, expected: '', offset: 0, data: Buffer.alloc(size), labels: {} });
    call.end();
    await ended;
    assert.deepEqual(offsets, [10, 300_010, 300_010, 300_015]);
  });

  it('refuses requests that are not gRPC', async () => {
    const session = connect(`http://localhost`, { createConnection: () => connectSocket(server.address) });
    try {
      const status = (headers: Record<string, string>) => new Promise<number>((resolve, reject) => {
        const req = session.request(headers);
        req.on('response', (h) => resolve(Number(h[':status'])));
        req.on('error', reject);
        req.end();
      });
      assert.equal(await status({ ':method': 'GET', ':path': '/containerd.services.version.v1.Version/Version' }), 405);
      assert.equal(await status({ ':method': 'POST', ':path': '/containerd.services.version.v1.Version/Version', 'content-type': 'text/plain' }), 415);
    } finally {
      session.close();
    }
  });
});
