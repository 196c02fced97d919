import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Code, NotFoundError } from '../../../core/errdefs/errdefs.js';
import {
  HealthCheckRequest,
  HealthCheckResponse,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthService,
} from '../../../api/gen/grpc/health/v1/health.js';
import { Request, Response } from '../../../api/gen/ttrpc/ttrpc.js';
import { socketPath } from '../../../api/ttrpc/address.js';
import { encodeFrame, FrameDecoder, MAX_PAYLOAD_LENGTH, MessageType, type DecodedFrame } from '../../../api/ttrpc/frame.js';
import { statusFromError } from '../../../api/ttrpc/status.js';
import { TtrpcClient, TtrpcServer } from '../../../api/ttrpc/index.js';

/** A socket speaking raw frames, to send what a well-behaved client never would. */
class RawPeer {
  private readonly decoder = new FrameDecoder();
  private readonly frames: DecodedFrame[] = [];
  private waiting: ((frame: DecodedFrame) => void) | undefined;

  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const frame of this.decoder.push(chunk)) {
        if (this.waiting) {
          const deliver = this.waiting;
          this.waiting = undefined;
          deliver(frame);
        } else this.frames.push(frame);
      }
    });
  }

  static connect(path: string): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({ path }, () => resolve(new RawPeer(socket)));
      socket.once('error', reject);
    });
  }

  send(streamId: number, type: number, payload: Uint8Array): void {
    this.socket.write(encodeFrame(streamId, type, payload));
  }

  next(): Promise<DecodedFrame> {
    const queued = this.frames.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve) => (this.waiting = resolve));
  }

  async nextResponse(): Promise<{ streamId: number; response: Response }> {
    const frame = await this.next();
    assert.ok(!frame.oversized);
    assert.equal(frame.header.type, MessageType.RESPONSE);
    return { streamId: frame.header.streamId, response: Response.decode(frame.payload) };
  }
}

function healthRequest(service: string): Uint8Array {
  return Request.encode({
    service: 'grpc.health.v1.Health',
    method: 'Check',
    payload: Buffer.from(HealthCheckRequest.encode({ service }).finish()),
    timeoutNano: 0,
    metadata: [],
  }).finish();
}

describe('ttrpc server protocol handling', () => {
  let dir: string;
  let path: string;
  let server: TtrpcServer;
  let peer: RawPeer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-ttrpc-unit-'));
    path = join(dir, 's.sock');
    server = new TtrpcServer();
    server.register(HealthService, {
      check: async (req) => {
        if (req.service === 'missing') throw new NotFoundError(`service ${req.service}`);
        return { status: ServingStatus.SERVING };
      },
    });
    await server.listen(`unix://${path}`);
    peer = await RawPeer.connect(path);
  });

  after(async () => {
    peer.socket.destroy();
    await server.close({ graceMs: 100 });
    rmSync(dir, { recursive: true, force: true });
  });

  async function assertStillServing(streamId: number) {
    peer.send(streamId, MessageType.REQUEST, healthRequest(''));
    const { streamId: answered, response } = await peer.nextResponse();
    assert.equal(answered, streamId);
    assert.equal(response.status?.code ?? 0, Code.OK);
    assert.equal(HealthCheckResponse.decode(response.payload).status, ServingStatus.SERVING);
  }

  it('answers a request on the same stream id', async () => {
    await assertStillServing(1);
  });

  it('answers an oversized frame with RESOURCE_EXHAUSTED and keeps the connection', async () => {
    peer.send(3, MessageType.REQUEST, Buffer.alloc(MAX_PAYLOAD_LENGTH + 1));
    const { streamId, response } = await peer.nextResponse();
    assert.equal(streamId, 3);
    assert.equal(response.status?.code, Code.RESOURCE_EXHAUSTED);
    assert.match(response.status?.message ?? '', /exceed maximum message size of 4194304/);
    await assertStillServing(5);
  });

  it('rejects an even (server-initiated) stream id with INVALID_ARGUMENT', async () => {
    peer.send(6, MessageType.REQUEST, healthRequest(''));
    const { streamId, response } = await peer.nextResponse();
    assert.equal(streamId, 6);
    assert.equal(response.status?.code, Code.INVALID_ARGUMENT);
    assert.match(response.status?.message ?? '', /StreamID must be odd/);
    await assertStillServing(7);
  });

  it('rejects an undecodable request envelope with INVALID_ARGUMENT', async () => {
    peer.send(9, MessageType.REQUEST, Buffer.from([0x0a, 0xff]));
    const { streamId, response } = await peer.nextResponse();
    assert.equal(streamId, 9);
    assert.equal(response.status?.code, Code.INVALID_ARGUMENT);
    await assertStillServing(11);
  });

  it('ignores frames that are not requests', async () => {
    peer.send(13, MessageType.RESPONSE, Buffer.from('stray'));
    peer.send(13, 0x7f, Buffer.alloc(0));
    await assertStillServing(15);
  });

  it('maps handler errors to their status code', async () => {
    peer.send(17, MessageType.REQUEST, healthRequest('missing'));
    const { response } = await peer.nextResponse();
    assert.deepEqual(response.status, { code: Code.NOT_FOUND, message: 'service missing: not found', details: [] });
  });
});

describe('ttrpc client protocol handling', () => {
  let dir: string;
  let path: string;
  let fake: Server;
  let received: Array<{ streamId: number; request: Request }>;
  let answer: (peer: RawPeer, streamId: number) => void;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-ttrpc-unit-'));
    path = join(dir, 'fake.sock');
    received = [];
    fake = createServer((socket) => {
      const peer = new RawPeer(socket);
      void (async () => {
        for (;;) {
          const frame = await peer.next();
          assert.ok(!frame.oversized);
          received.push({ streamId: frame.header.streamId, request: Request.decode(frame.payload) });
          answer(peer, frame.header.streamId);
        }
      })();
    });
    await new Promise<void>((resolve) => fake.listen(path, resolve));
  });

  after(async () => {
    await new Promise((resolve) => fake.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  function ok(payload: string) {
    return (peer: RawPeer, streamId: number) =>
      peer.send(streamId, MessageType.RESPONSE, Response.encode({ status: undefined, payload: Buffer.from(payload) }).finish());
  }

  it('numbers streams with odd ids starting at 1 and sends the request envelope', async () => {
    answer = ok('pong');
    const client = await TtrpcClient.connect(`unix://${path}`);
    try {
      for (let i = 0; i < 3; i++) {
        const reply = await client.call('svc.Echo', 'Ping', Buffer.from('ping'), { timeoutMs: 1500, metadata: { Key: ['a', 'b'] } });
        assert.equal(Buffer.from(reply).toString(), 'pong');
      }
      assert.deepEqual(received.map((r) => r.streamId), [1, 3, 5]);
      const { request } = received[0]!;
      assert.equal(request.service, 'svc.Echo');
      assert.equal(request.method, 'Ping');
      assert.equal(request.payload.toString(), 'ping');
      assert.equal(request.timeoutNano, 1_500_000_000);
      assert.deepEqual(request.metadata, [{ key: 'key', value: 'a' }, { key: 'key', value: 'b' }]);
    } finally {
      client.close();
    }
  });

  it('fails an oversized response with RESOURCE_EXHAUSTED and keeps the connection', async () => {
    let first = true;
    answer = (peer, streamId) => {
      if (first) peer.send(streamId, MessageType.RESPONSE, Buffer.alloc(MAX_PAYLOAD_LENGTH + 1));
      else ok('fine')(peer, streamId);
      first = false;
    };
    const client = await TtrpcClient.connect(`unix://${path}`);
    try {
      await assert.rejects(client.call('svc.Echo', 'Big', Buffer.alloc(0)), { code: Code.RESOURCE_EXHAUSTED });
      assert.equal(Buffer.from(await client.call('svc.Echo', 'Small', Buffer.alloc(0))).toString(), 'fine');
    } finally {
      client.close();
    }
  });

  it('refuses to send a request over the size limit', async () => {
    const client = await TtrpcClient.connect(`unix://${path}`);
    const before = received.length;
    try {
      await assert.rejects(client.call('svc.Echo', 'Huge', Buffer.alloc(MAX_PAYLOAD_LENGTH)), {
        code: Code.RESOURCE_EXHAUSTED,
      });
      assert.equal(received.length, before);
    } finally {
      client.close();
    }
  });

  it('rejects with UNAVAILABLE when nothing listens', async () => {
    await assert.rejects(TtrpcClient.connect(`unix://${join(dir, 'nobody.sock')}`), { code: Code.UNAVAILABLE });
  });
});

describe('statusFromError', () => {
  it('keeps an explicit gRPC code', () => {
    assert.deepEqual(statusFromError(Object.assign(new Error('busy'), { code: 9 })), { code: 9, message: 'busy', details: [] });
  });

  it('classifies errdefs errors', () => {
    assert.equal(statusFromError(new NotFoundError('x')).code, Code.NOT_FOUND);
  });

  it('falls back to UNKNOWN, including for out-of-range and zero codes', () => {
    assert.equal(statusFromError(new Error('plain')).code, Code.UNKNOWN);
    assert.equal(statusFromError(Object.assign(new Error('odd'), { code: 42 })).code, Code.UNKNOWN);
    assert.equal(statusFromError(Object.assign(new Error('zero'), { code: 0 })).code, Code.UNKNOWN);
    assert.equal(statusFromError('a string').message, 'a string');
  });

  it('maps errno codes like the rest of the daemon', () => {
    assert.equal(statusFromError(Object.assign(new Error('gone'), { code: 'ENOENT' })).code, Code.NOT_FOUND);
  });
});

describe('socketPath', () => {
  it('strips unix:// for filesystem sockets', () => {
    assert.equal(socketPath('unix:///run/x.sock'), '/run/x.sock');
  });

  it('maps a scheme-less address to an abstract socket', () => {
    assert.equal(socketPath('/containerd-shim/x.sock'), '\0/containerd-shim/x.sock');
    assert.equal(socketPath('\0already'), '\0already');
  });
});
