import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Code, FailedPreconditionError, NotFoundError } from '../../core/errdefs/errdefs.js';
import {
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthService,
} from '../../api/gen/grpc/health/v1/health.js';
import { EventsService, type Envelope } from '../../api/gen/services/ttrpc/events/v1/events.js';
import {
  TtrpcClient,
  TtrpcClosedError,
  TtrpcServer,
  typedClient,
  type HandlerContext,
} from '../../api/ttrpc/index.js';

const repo = resolve(fileURLToPath(import.meta.url), '../../..');

interface Forwarded {
  envelope: Envelope | undefined;
  ctx: HandlerContext;
}

/** Health.Check doubles as a controllable handler: the requested name selects the behaviour. */
async function check(service: string, ctx: HandlerContext) {
  const [verb, arg] = service.split(':');
  switch (verb) {
    case 'delay':
      await sleep(Number(arg), undefined, { signal: ctx.signal });
      return { status: Number(arg) % 2 === 0 ? ServingStatus.SERVING : ServingStatus.NOT_SERVING };
    case 'not-found':
      throw new NotFoundError(`container ${arg}`);
    case 'coded':
      throw Object.assign(new Error('custom failure'), { code: Code.ABORTED });
    case 'plain':
      throw new Error('something broke');
    case 'precondition':
      throw new FailedPreconditionError('task is running');
    case 'wait-abort':
      await once(ctx.signal, 'abort');
      waitAbortReasons.push(ctx.signal.reason);
      throw ctx.signal.reason;
    default:
      return { status: ServingStatus.SERVING };
  }
}
const waitAbortReasons: unknown[] = [];

function newServer(forwarded: Forwarded[]): TtrpcServer {
  const server = new TtrpcServer();
  server.register(EventsService, {
    forward: async (request, ctx) => {
      forwarded.push({ envelope: request.envelope, ctx });
      return {};
    },
  });
  server.register(HealthService, { check: (request, ctx) => check(request.service, ctx) });
  return server;
}

describe('ttrpc over a unix socket', () => {
  let dir: string;
  let address: string;
  let server: TtrpcServer;
  let client: TtrpcClient;
  const forwarded: Forwarded[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-ttrpc-it-'));
    address = `unix://${join(dir, 'ttrpc.sock')}`;
    server = newServer(forwarded);
    await server.listen(address);
    client = await TtrpcClient.connect(address);
  });

  after(async () => {
    client.close();
    await server.close({ graceMs: 500 });
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves concurrent calls whose answers arrive out of order', async () => {
    const health = typedClient(client, HealthService);
    const delays = Array.from({ length: 24 }, (_, i) => 5 + ((i * 37) % 120));
    const finished: number[] = [];
    const results = await Promise.all(
      delays.map(async (delay, i) => {
        const response = await health.check({ service: `delay:${delay}` });
        finished.push(i);
        return response.status;
      }),
    );
    assert.deepEqual(results, delays.map((d) => (d % 2 === 0 ? ServingStatus.SERVING : ServingStatus.NOT_SERVING)));
    assert.notDeepEqual(finished, [...finished].sort((a, b) => a - b), 'answers should not be serialised');
  });

  it('propagates the namespace and metadata to the handler', async () => {
    const events = typedClient(client, EventsService, { namespace: 'berth-test', metadata: { 'X-Trace': 'abc' } });
    const envelope: Envelope = {
      timestamp: new Date('2024-01-02T03:04:05.678Z'),
      namespace: 'default',
      topic: '/test/hello',
      event: { typeUrl: 'containerd.events.ContainerCreate', value: Buffer.from([0x0a, 0x01, 0x78]) },
    };
    await events.forward({ envelope });
    await events.forward({ envelope }, { namespace: 'other', metadata: { extra: ['1', '2'] } });

    const [first, second] = forwarded.slice(-2);
    assert.deepEqual(first?.envelope, envelope);
    assert.equal(first?.ctx.namespace, 'berth-test');
    assert.deepEqual(first?.ctx.metadata['x-trace'], ['abc']);
    assert.deepEqual(first?.ctx.metadata['containerd-namespace-ttrpc'], ['berth-test']);
    assert.equal(second?.ctx.namespace, 'other');
    assert.deepEqual(second?.ctx.metadata.extra, ['1', '2']);
  });

  it('leaves the namespace unset when none is sent', async () => {
    await typedClient(client, EventsService).forward({ envelope: undefined });
    assert.equal(forwarded.at(-1)?.ctx.namespace, undefined);
  });

  it('maps handler errors to status codes and errdefs errors', async () => {
    const health = typedClient(client, HealthService);
    await assert.rejects(health.check({ service: 'not-found:c1' }), (err: unknown) => {
      assert.ok(err instanceof NotFoundError);
      assert.equal(err.code, Code.NOT_FOUND);
      assert.equal(err.message, 'container c1: not found');
      return true;
    });
    await assert.rejects(health.check({ service: 'precondition' }), { code: Code.FAILED_PRECONDITION, message: 'task is running: failed precondition' });
    await assert.rejects(health.check({ service: 'coded' }), { code: Code.ABORTED, message: 'custom failure' });
    await assert.rejects(health.check({ service: 'plain' }), { code: Code.UNKNOWN, message: 'something broke' });
  });

  it('answers unknown services and methods with UNIMPLEMENTED', async () => {
    await assert.rejects(client.call('no.such.Service', 'Check', Buffer.alloc(0)), (err: unknown) => {
      assert.equal((err as { code?: number }).code, Code.UNIMPLEMENTED);
      assert.match((err as Error).message, /^service no\.such\.Service/);
      return true;
    });
    await assert.rejects(client.call('grpc.health.v1.Health', 'Watch', Buffer.alloc(0)), (err: unknown) => {
      assert.equal((err as { code?: number }).code, Code.UNIMPLEMENTED);
      assert.match((err as Error).message, /^method Watch/);
      return true;
    });
  });

  it('aborts the handler signal when the request timeout expires', async () => {
    const started = Date.now();
    const health = typedClient(client, HealthService);
    await assert.rejects(health.check({ service: 'wait-abort' }, { timeoutMs: 150 }), { code: Code.DEADLINE_EXCEEDED });
    while (waitAbortReasons.length === 0 && Date.now() - started < 3000) await sleep(10);
    assert.equal(waitAbortReasons.length, 1);
    assert.equal((waitAbortReasons[0] as { code?: number }).code, Code.DEADLINE_EXCEEDED);
    assert.ok(Date.now() - started < 2000, 'the deadline should fire promptly');
  });

  it('counts connections and reports when the last one leaves', async () => {
    const counts: string[] = [];
    const onConnection = (n: number) => counts.push(`+${n}`);
    const onDisconnect = (n: number) => counts.push(`-${n}`);
    server.on('connection', onConnection);
    server.on('disconnect', onDisconnect);
    try {
      const extra = await TtrpcClient.connect(address);
      await typedClient(extra, HealthService).check({ service: '' });
      assert.equal(server.connections, 2);
      const left = once(server, 'disconnect');
      extra.close();
      assert.deepEqual(await left, [1]);
      assert.deepEqual(counts, ['+2', '-1']);
    } finally {
      server.off('connection', onConnection);
      server.off('disconnect', onDisconnect);
    }
  });
});

describe('ttrpc connection lifecycle', () => {
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-ttrpc-it-'));
  });

  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves an abstract socket address', async () => {
    const address = `berth-ttrpc-test-${process.pid}-${Date.now()}`;
    const server = newServer([]);
    await server.listen(address);
    const client = await TtrpcClient.connect(address);
    try {
      assert.equal((await typedClient(client, HealthService).check({ service: '' })).status, ServingStatus.SERVING);
    } finally {
      client.close();
      await server.close();
    }
  });

  it('rejects pending calls and fires onClose once when the client closes', async () => {
    const address = `unix://${join(dir, 'close.sock')}`;
    const server = newServer([]);
    await server.listen(address);
    const client = await TtrpcClient.connect(address);
    let closes = 0;
    client.onClose(() => closes++);
    const pending = typedClient(client, HealthService).check({ service: 'delay:5000' });
    await sleep(50);
    client.close();
    await assert.rejects(pending, (err: unknown) => {
      assert.ok(err instanceof TtrpcClosedError);
      assert.equal(err.code, Code.UNAVAILABLE);
      return true;
    });
    await sleep(20);
    client.close();
    assert.equal(closes, 1);
    await assert.rejects(client.call('grpc.health.v1.Health', 'Check', Buffer.alloc(0)), TtrpcClosedError);
    let lateClose = false;
    client.onClose(() => (lateClose = true));
    await sleep(0);
    assert.ok(lateClose, 'onClose registered after the close still runs');
    await server.close();
  });

  it('lets in-flight calls finish on close, then drops the connection', async () => {
    const address = `unix://${join(dir, 'drain.sock')}`;
    const server = newServer([]);
    await server.listen(address);
    const client = await TtrpcClient.connect(address);
    const closed = new Promise<void>((resolve) => client.onClose(resolve));
    const inflight = typedClient(client, HealthService).check({ service: 'delay:200' });
    await sleep(30);
    await server.close({ graceMs: 5000 });
    assert.equal((await inflight).status, ServingStatus.SERVING);
    await closed;
    assert.equal(server.connections, 0);
    await assert.rejects(TtrpcClient.connect(address), { code: Code.UNAVAILABLE });
  });

  it('cuts handlers that outlive the grace period and aborts their signal', async () => {
    const address = `unix://${join(dir, 'force.sock')}`;
    const server = newServer([]);
    await server.listen(address);
    const client = await TtrpcClient.connect(address);
    const before = waitAbortReasons.length;
    const stuck = assert.rejects(typedClient(client, HealthService).check({ service: 'wait-abort' }), TtrpcClosedError);
    await sleep(30);
    await server.close({ graceMs: 100 });
    await stuck;
    assert.equal(waitAbortReasons.length, before + 1);
    assert.equal((waitAbortReasons.at(-1) as { code?: number }).code, Code.CANCELLED);
  });

  it('listens on an inherited file descriptor', async () => {
    const address = `berth-ttrpc-fd-${process.pid}-${Date.now()}`;
    const listener = createServer();
    await new Promise<void>((done) => listener.listen({ path: `\0${address}` }, done));
    // Node exposes no public accessor for a listener's descriptor; the handle's is stable on Unix.
    const fd = (listener as unknown as { _handle: { fd: number } })._handle.fd;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', fdChildScript()], {
      cwd: repo,
      stdio: ['ignore', 'pipe', 'inherit', fd],
    });
    try {
      listener.close(); // the child holds its own copy of the descriptor now
      const [line] = (await once(child.stdout!, 'data')) as [Buffer];
      assert.equal(line.toString().trim(), 'ready');
      const client = await TtrpcClient.connect(address);
      try {
        assert.equal((await typedClient(client, HealthService).check({ service: '' })).status, ServingStatus.SERVING);
      } finally {
        client.close();
      }
    } finally {
      child.kill('SIGKILL');
    }
  });
});

/** A tiny server process that serves the health service on fd 3 (like a shim given its socket). */
function fdChildScript(): string {
  const url = (path: string) => JSON.stringify(pathToFileURL(join(repo, path)).href);
  return `
    import { TtrpcServer } from ${url('api/ttrpc/index.ts')};
    import { HealthService } from ${url('api/gen/grpc/health/v1/health.ts')};
    const server = new TtrpcServer();
    server.register(HealthService, { check: async () => ({ status: 1 }) });
    await server.listen({ fd: 3 });
    process.stdout.write('ready\\n');
  `;
}
