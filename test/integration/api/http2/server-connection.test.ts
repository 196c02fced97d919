// The HTTP/2 server connection (api/http2/server-connection.ts) against Node's HTTP/2 client
// (nghttp2) over a real unix socket: headers as another implementation encodes them (Huffman,
// dynamic table, many requests on one connection), request and response bodies larger than
// every window, a client with a tiny window, back-pressure from a paused reader, PING, client
// resets, graceful shutdown with a request in flight, and a client that is not HTTP/2.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type ClientHttp2Session } from 'node:http2';
import { connect as connectSocket, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ServerConnection } from '../../../../api/http2/server-connection.js';
import { prng, seedFromEnv } from '../../../helpers/reliability.js';
import type { ServerStream } from '../../../../api/http2/server-stream.js';

let dir: string;
let server: Server;
let socketPath: string;
const connections = new Set<ServerConnection>();
/** What the last /hold request's stream saw, for the tests that drive it by hand. */
let held: { stream: ServerStream; received: number } | undefined;
let resets = 0;
const protocolErrors: string[] = [];
/** Bytes each client sent, in order, per connection (for replays). */
const received: Buffer[][] = [];

/**
 * /echo: answers with the request headers as JSON, then the request body back.
 * /sha: answers with the SHA-256 of the body, reading it slowly (pauses between chunks).
 * /big?n: answers with n pseudo-random bytes and their digest in the trailers.
 * /hold: reads nothing, answers nothing: the test drives it.
 */
function onStream(stream: ServerStream): void {
  const path = stream.headers[':path'] ?? '';
  const chunks: Buffer[] = [];
  stream.onclose = () => { if (stream.aborted) resets++; };
  if (path === '/echo') {
    stream.ondata = (c) => chunks.push(Buffer.from(c));
    stream.onend = () => {
      stream.respond([[':status', '200'], ['x-headers', JSON.stringify(stream.headers)]], false);
      stream.write(Buffer.concat(chunks));
      stream.end([['x-done', 'yes']]);
    };
  } else if (path === '/sha') {
    const hash = createHash('sha256');
    stream.ondata = (c) => {
      hash.update(c);
      stream.pause();
      setImmediate(() => stream.resume());
    };
    stream.onend = () => {
      stream.respond([[':status', '200']], false);
      stream.end([['x-sha', hash.digest('hex')]]);
    };
  } else if (path.startsWith('/big?')) {
    const body = bigBody(Number(path.slice(5)));
    stream.respond([[':status', '200']], false);
    let off = 0;
    const pump = () => {
      while (off < body.length) {
        const piece = body.subarray(off, off + 100_000);
        off += piece.length;
        if (!stream.write(piece)) {
          stream.ondrain = pump;
          return;
        }
      }
      stream.end([['x-sha', createHash('sha256').update(body).digest('hex')]]);
    };
    pump();
  } else if (path === '/hold') {
    held = { stream, received: 0 };
    stream.pause();
  } else {
    stream.respond([[':status', '404']], true);
  }
}

const bodies = new Map<number, Buffer>();
function bigBody(n: number): Buffer {
  if (!bodies.has(n)) bodies.set(n, randomBytes(n));
  return bodies.get(n)!;
}

function session(settings: Record<string, number> = {}): ClientHttp2Session {
  const s = connect('http://localhost', { createConnection: () => connectSocket(socketPath), settings });
  s.on('error', () => undefined);
  return s;
}

interface Reply { status: number; headers: Record<string, unknown>; trailers: Record<string, unknown>; body: Buffer }

function request(s: ClientHttp2Session, headers: Record<string, string>, body?: Buffer): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = s.request({ ':method': 'POST', ...headers });
    const chunks: Buffer[] = [];
    let status = 0;
    let h: Record<string, unknown> = {};
    let trailers: Record<string, unknown> = {};
    req.on('response', (rh) => { status = Number(rh[':status']); h = rh; });
    req.on('trailers', (t) => { trailers = t; });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve({ status, headers: h, trailers, body: Buffer.concat(chunks) }));
    req.on('error', reject);
    req.end(body);
  });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-h2-'));
  socketPath = join(dir, 'h2.sock');
  server = createServer((socket) => {
    const bytes: Buffer[] = [];
    received.push(bytes);
    socket.on('data', (chunk: Buffer) => bytes.push(chunk));
    const c = new ServerConnection(socket, { streamWindow: 1 << 20, connectionWindow: 4 << 20, onStream, onProtocolError: (m) => protocolErrors.push(m) });
    connections.add(c);
    c.onclose = () => connections.delete(c);
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
});

after(async () => {
  for (const c of connections) c.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

describe('HTTP/2 server connection', () => {
  it('reads headers as nghttp2 encodes them, over many requests on one connection', async () => {
    const s = session();
    try {
      // Every byte Node lets into a header value, in values that repeat (the dynamic table)
      // and change (literals), Huffman-coded where that is shorter.
      const all = Array.from({ length: 256 }, (_, i) => i).filter((b) => b === 9 || (b >= 0x20 && b !== 0x7f)).map((b) => String.fromCharCode(b)).join('');
      for (let i = 0; i < 40; i++) {
        const sent = { ':path': '/echo', 'containerd-namespace': `ns-${i % 3}`, 'x-all': all.slice(i, i + 120), 'x-repeat': 'same value each time', 'grpc-timeout': `${i}m`, constructor: 'c', ['__proto__']: 'p' };
        const r = await request(s, sent, Buffer.from(`body ${i}`));
        assert.equal(r.status, 200);
        const seen = JSON.parse(String(r.headers['x-headers']));
        for (const [k, v] of Object.entries(sent)) assert.equal(seen[k], v, `request ${i} header ${k}`);
        assert.equal(r.body.toString(), `body ${i}`);
        assert.equal(r.trailers['x-done'], 'yes');
      }
    } finally {
      s.close();
    }
  });

  it('takes a request body larger than its windows from a reader that keeps pausing', async () => {
    const s = session();
    try {
      const body = randomBytes(6 << 20);
      const r = await request(s, { ':path': '/sha' }, body);
      assert.equal(r.trailers['x-sha'], createHash('sha256').update(body).digest('hex'));
    } finally {
      s.close();
    }
  });

  it('sends a response larger than the client window, in as many rounds as it takes', async () => {
    const s = session({ initialWindowSize: 1024 });
    try {
      const [a, b] = await Promise.all([request(s, { ':path': '/big?3000000' }), request(s, { ':path': '/big?200000' })]);
      assert.equal(a.body.length, 3_000_000);
      assert.equal(createHash('sha256').update(a.body).digest('hex'), a.trailers['x-sha']);
      assert.equal(createHash('sha256').update(b.body).digest('hex'), b.trailers['x-sha']);
    } finally {
      s.close();
    }
  });

  it('answers PING and takes a client reset', async () => {
    const s = session();
    try {
      await new Promise<void>((resolve) => s.once('connect', () => resolve()));
      await new Promise<void>((resolve, reject) => s.ping(Buffer.from('berthpng'), (err, _ms, payload) => (err ? reject(err) : (assert.equal(payload.toString(), 'berthpng'), resolve()))));
      const before = resets;
      const req = s.request({ ':method': 'POST', ':path': '/hold' });
      req.on('error', () => undefined);
      req.write(Buffer.alloc(1000));
      while (!held) await new Promise((r) => setTimeout(r, 5));
      req.close(8);
      while (resets === before) await new Promise((r) => setTimeout(r, 5));
      assert.equal(held.stream.closed, true);
      // The connection carries on.
      assert.equal((await request(s, { ':path': '/echo' }, Buffer.from('after'))).body.toString(), 'after');
    } finally {
      held = undefined;
      s.close();
    }
  });

  it('acknowledges every PING of a burst, each with its own payload, held-back ones included', async () => {
    const s = session();
    try {
      await new Promise<void>((resolve) => s.once('connect', () => resolve()));
      const payloads = Array.from({ length: 7 }, (_, i) => Buffer.from(`burst-0${i}`));
      const echoed = await Promise.all(payloads.map((p) => new Promise<string>((resolve, reject) => {
        s.ping(p, (err, _ms, payload) => (err ? reject(err) : resolve(payload.toString())));
      })));
      assert.deepEqual(echoed, payloads.map((p) => p.toString()));
      // An acknowledgement waiting for company leaves with the next response.
      const answered = new Promise<string>((resolve, reject) => s.ping(Buffer.from('withresp'), (err, _ms, payload) => (err ? reject(err) : resolve(payload.toString()))));
      assert.equal((await request(s, { ':path': '/echo' }, Buffer.from('x'))).body.toString(), 'x');
      assert.equal(await answered, 'withresp');
    } finally {
      s.close();
    }
  });

  it('lets a request in flight finish after shutdown and refuses new ones', async () => {
    const s = session();
    try {
      const req = s.request({ ':method': 'POST', ':path': '/hold' });
      req.on('error', () => undefined);
      req.end();
      while (!held) await new Promise((r) => setTimeout(r, 5));
      const goaway = new Promise<void>((resolve) => s.once('goaway', () => resolve()));
      for (const c of connections) c.shutdown();
      await goaway;
      const response = new Promise<number>((resolve) => req.on('response', (h) => resolve(Number(h[':status']))));
      held.stream.respond([[':status', '200']], true);
      assert.equal(await response, 200);
      await new Promise<void>((resolve) => s.once('close', () => resolve()));
    } finally {
      held = undefined;
      s.destroy();
    }
  });

  it('closes a connection that does not start with the HTTP/2 preface', async () => {
    const sock = connectSocket(socketPath);
    const chunks: Buffer[] = [];
    sock.on('data', (c) => chunks.push(c));
    sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise<void>((resolve) => sock.on('close', () => resolve()));
    const out = Buffer.concat(chunks);
    // SETTINGS first, then a GOAWAY (type 7) with PROTOCOL_ERROR.
    let pos = 0;
    let goawayCode: number | undefined;
    while (pos + 9 <= out.length) {
      const len = out.readUIntBE(pos, 3);
      if (out[pos + 3] === 7) goawayCode = out.readUInt32BE(pos + 9 + 4);
      pos += 9 + len;
    }
    assert.equal(goawayCode, 1);
    assert.deepEqual(protocolErrors, ['not an HTTP/2 client preface']);
  });
  it('serves the same requests however the bytes are cut, and survives garbage after the preface', async () => {
    const seed = seedFromEnv(Date.now() % 1_000_000);
    const rnd = prng(seed);
    // What nghttp2 sends for three requests on one connection (HPACK state included).
    const first = received.length;
    const s = session();
    try {
      for (let i = 0; i < 3; i++) await request(s, { ':path': '/echo', 'x-n': String(i) }, randomBytes(20_000 + i));
    } finally {
      s.close();
    }
    const recorded = Buffer.concat(received[first]!);
    /** Writes `bytes` in pieces of 1..max bytes; resolves with what the server sent back. */
    const replay = (bytes: Buffer, max: number) => new Promise<Buffer>((resolve) => {
      const sock = connectSocket(socketPath);
      const out: Buffer[] = [];
      sock.on('data', (c) => out.push(c));
      sock.on('error', () => undefined);
      sock.on('close', () => resolve(Buffer.concat(out)));
      let pos = 0;
      const next = () => {
        if (pos >= bytes.length) return void setTimeout(() => sock.end(), 100);
        const n = rnd.int(1, max);
        sock.write(bytes.subarray(pos, pos + n));
        pos += n;
        setImmediate(next);
      };
      next();
    });
    /** Stream ids whose response ended (a HEADERS frame with END_STREAM), and GOAWAY codes. */
    const ended = (out: Buffer) => {
      const streams: number[] = [];
      const goaway: number[] = [];
      for (let pos = 0; pos + 9 <= out.length; pos += 9 + out.readUIntBE(pos, 3)) {
        if (out[pos + 3] === 1 && (out[pos + 4]! & 1)) streams.push(out.readUInt32BE(pos + 5) & 0x7fffffff);
        if (out[pos + 3] === 7) goaway.push(out.readUInt32BE(pos + 13));
      }
      return { streams, goaway };
    };
    for (const max of [1, 7, 100, 5000]) {
      const r = ended(await replay(recorded, max));
      assert.deepEqual(r.streams, [1, 3, 5], `seed ${seed}, pieces up to ${max} bytes`);
      assert.deepEqual(r.goaway, [], `seed ${seed}`);
    }
    // Random bytes after a valid preface and SETTINGS: the connection may be closed with a
    // GOAWAY or left waiting, but the server must neither throw nor stop serving others.
    const preface = recorded.subarray(0, 24 + 9 + recorded.readUIntBE(24, 3));
    for (let i = 0; i < 30; i++) {
      const garbage = Buffer.from(Array.from({ length: rnd.int(1, 400) }, () => rnd.int(0, 255)));
      const r = ended(await replay(Buffer.concat([preface, garbage]), 50));
      assert.ok(r.goaway.every((code) => code > 0), `seed ${seed}: only error GOAWAYs`);
    }
    const after = session();
    try {
      assert.equal((await request(after, { ':path': '/echo' }, Buffer.from('still here'))).body.toString(), 'still here');
    } finally {
      after.close();
    }
  });
});
