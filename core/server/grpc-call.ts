/**
 * One gRPC call on an HTTP/2 stream, server side: the length-prefixed message framing in both
 * directions, the response headers and the status trailers, the client's deadline
 * (`grpc-timeout`) and cancellation (the stream closing before the status was sent).
 *
 * berthd serves gRPC on its own HTTP/2 server (api/http2) instead of grpc-js's server or Node's
 * http2 module: the protocol a server needs is this small, and every `ctr` invocation is a new
 * connection with a dozen short calls, where general-purpose layers (interceptors, metadata
 * objects, per-stream Duplex objects and event plumbing) were most of the daemon's cost per
 * call. grpc-js stays the client (client/, proxy plugins).
 */
import type { ServerStream } from '../../api/http2/server-stream.js';
import { gunzipSync, inflateSync } from 'node:zlib';
import { Code } from '../errdefs/errdefs.js';

/** Length of the prefix before every message: a compressed flag and a big-endian uint32. */
const PREFIX = 5;

export interface CallLimits {
  maxRecvMessageSize: number;
  maxSendMessageSize: number;
}

/** A status a call ends with. */
export interface CallStatus {
  code: Code;
  message: string;
}

/** An error that ends the call with its own status (framing, size limits, decoding). */
export class CallError extends Error {
  constructor(readonly code: Code, message: string) {
    super(message);
  }
}

/**
 * The `grpc-message` trailer's encoding: UTF-8, with bytes outside printable ASCII and '%'
 * percent-encoded (gRPC over HTTP/2).
 */
export function encodeStatusMessage(message: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(message)) return message;
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/** Milliseconds of a `grpc-timeout` header value (e.g. `100m`), or undefined if absent/invalid. */
export function parseTimeout(value: string | undefined): number | undefined {
  if (!value) return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (!m) return undefined;
  return Number(m[1]) * TIMEOUT_UNIT_MS[m[2]!]!;
}

/**
 * Splits a byte stream into gRPC messages. A message that arrived in one piece is returned as a
 * view of it. One that is still arriving gets its buffer as soon as its length is known, and
 * each piece is copied into place as it comes: the copy overlaps the sender's writing instead
 * of following the last byte (a 1 MiB Content.Write arrives as some 64 HTTP/2 frames).
 */
export class MessageReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Length and compressed flag of the message being read, once its prefix has arrived. */
  private next: { length: number; compressed: boolean } | undefined;
  /** The buffer a partly arrived message is being copied into, and how much of it is filled. */
  private body: Buffer | undefined;
  private filled = 0;

  constructor(private readonly maxMessageSize: number, private readonly encoding: string | undefined) {}

  /** Adds a piece of the stream; returns the messages it completed. Throws CallError. */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    if (this.body) {
      const n = Math.min(chunk.length, this.body.length - this.filled);
      chunk.copy(this.body, this.filled, 0, n);
      this.filled += n;
      if (this.filled < this.body.length) return out;
      out.push(this.complete(this.body));
      this.body = undefined;
      chunk = chunk.subarray(n);
    }
    if (chunk.length) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    for (;;) {
      if (!this.next) {
        if (this.buffered < PREFIX) break;
        const prefix = this.take(PREFIX);
        const length = prefix.readUInt32BE(1);
        if (length > this.maxMessageSize) {
          throw new CallError(Code.RESOURCE_EXHAUSTED, `Received message larger than max (${length} vs. ${this.maxMessageSize})`);
        }
        this.next = { length, compressed: prefix[0] === 1 };
      }
      if (this.buffered < this.next.length) {
        // The rest is still on its way: move what is here into the message's own buffer.
        this.body = Buffer.allocUnsafe(this.next.length);
        this.filled = this.buffered;
        if (this.buffered) this.take(this.buffered).copy(this.body, 0);
        break;
      }
      const body = this.next.length ? this.take(this.next.length) : Buffer.alloc(0);
      out.push(this.complete(body));
    }
    return out;
  }

  /** Bytes of an unfinished message at the end of the stream (a truncated request). */
  get pending(): number {
    return this.buffered + (this.body ? this.filled : 0) + (this.next ? PREFIX : 0);
  }

  private complete(body: Buffer): Buffer {
    const compressed = this.next!.compressed;
    this.next = undefined;
    this.filled = 0;
    return compressed ? this.decompress(body) : body;
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    this.buffered -= n;
    if (first.length >= n) {
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - filled);
      c.copy(out, filled, 0, k);
      filled += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }

  private decompress(body: Buffer): Buffer {
    let plain: Buffer;
    try {
      if (this.encoding === 'gzip') plain = gunzipSync(body, { maxOutputLength: this.maxMessageSize });
      else if (this.encoding === 'deflate') plain = inflateSync(body, { maxOutputLength: this.maxMessageSize });
      else throw new CallError(Code.INTERNAL, `compressed message with grpc-encoding ${JSON.stringify(this.encoding ?? 'identity')}`);
    } catch (err) {
      if (err instanceof CallError) throw err;
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new CallError(Code.RESOURCE_EXHAUSTED, `Received message larger than max (decompressed, limit ${this.maxMessageSize})`);
      }
      throw new CallError(Code.INTERNAL, `cannot decompress message: ${(err as Error).message}`);
    }
    return plain;
  }
}

type CancelListener = () => void;

/** Request headers of a call, names in lower case (gRPC metadata among them). */
export type CallHeaders = Readonly<Record<string, string | undefined>>;

/** The server side of one call. Requests and responses are raw (serialized) messages. */
export class ServerCall {
  readonly headers: CallHeaders;
  private readonly reader: MessageReader;
  private readonly queue: Buffer[] = [];
  /** The reader waiting for the next request message, if any. */
  private pull: { resolve: (r: IteratorResult<Buffer>) => void; reject: (err: CallError) => void } | undefined;
  private failure: CallError | undefined;
  private requestEnded = false;
  private finished = false;
  private isCancelled = false;
  private cancelListeners: CancelListener[] = [];
  private deadline: NodeJS.Timeout | undefined;
  private drainWaiters: (() => void)[] = [];

  constructor(private readonly stream: ServerStream, private readonly limits: CallLimits) {
    const headers = stream.headers;
    this.headers = headers;
    const encoding = headers['grpc-encoding'];
    this.reader = new MessageReader(limits.maxRecvMessageSize, encoding !== undefined && encoding !== 'identity' ? encoding : undefined);
    stream.onclose = () => {
      if (this.deadline) clearTimeout(this.deadline);
      if (!this.finished) this.cancel();
      this.deliverEnd();
    };
    stream.ondata = (chunk) => this.onData(chunk);
    stream.onend = () => {
      this.requestEnded = true;
      if (!this.failure && this.reader.pending > 0) this.fail(new CallError(Code.INTERNAL, 'request stream ended inside a message'));
      this.deliverEnd();
    };
    stream.ondrain = () => {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
    };
    const timeoutMs = parseTimeout(headers['grpc-timeout']);
    if (timeoutMs !== undefined) {
      this.deadline = setTimeout(() => {
        if (this.finished) return;
        this.finish({ code: Code.DEADLINE_EXCEEDED, message: 'Deadline exceeded' });
        this.cancel();
      }, Math.max(0, timeoutMs));
    }
  }

  /** True once the client has gone away or the deadline passed (the status cannot be sent). */
  get cancelled(): boolean {
    return this.isCancelled;
  }

  onCancel(listener: CancelListener): void {
    if (this.isCancelled) listener();
    else this.cancelListeners.push(listener);
  }

  /** The request messages, in order; throws the CallError that broke the request stream. */
  messages(): AsyncIterableIterator<Buffer> {
    const it: AsyncIterableIterator<Buffer> = {
      next: () => {
        const msg = this.queue.shift();
        if (msg) {
          if (this.queue.length < 2 && this.stream.paused) this.stream.resume();
          return Promise.resolve({ value: msg, done: false });
        }
        if (this.failure) return Promise.reject(this.failure);
        if (this.requestEnded || this.stream.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise<IteratorResult<Buffer>>((resolve, reject) => {
          this.pull = { resolve, reject };
        });
      },
      [Symbol.asyncIterator]: () => it,
    };
    return it;
  }

  /** The one request message of a unary or server-streaming call. */
  async single(): Promise<Buffer> {
    const it = this.messages();
    const first = await it.next();
    if (first.done) throw new CallError(Code.INTERNAL, 'request stream ended without a message');
    const extra = await it.next();
    if (!extra.done) throw new CallError(Code.INTERNAL, 'more than one request message for a unary request');
    return first.value;
  }

  /** Sends one response message; resolves when the stream can take more. */
  send(message: Buffer): Promise<void> {
    if (this.finished || this.stream.closed) return Promise.resolve();
    if (message.length > this.limits.maxSendMessageSize) {
      return Promise.reject(new CallError(Code.RESOURCE_EXHAUSTED, `Sent message larger than max (${message.length} vs. ${this.limits.maxSendMessageSize})`));
    }
    this.stream.respond(RESPONSE_HEADERS, false);
    const prefix = Buffer.allocUnsafe(PREFIX);
    prefix[0] = 0;
    prefix.writeUInt32BE(message.length, 1);
    this.stream.write(prefix);
    if (this.stream.write(message)) return Promise.resolve();
    return new Promise<void>((resolve) => this.drainWaiters.push(resolve));
  }

  /** Ends the call with a status (once; later calls are ignored). */
  finish(status: CallStatus): void {
    if (this.finished) return;
    this.finished = true;
    if (this.deadline) clearTimeout(this.deadline);
    if (this.stream.closed) return;
    // Requests nobody will read: the stream discards them from here on.
    this.queue.length = 0;
    const trailers: HeaderList = status.code === 0 && !status.message
      ? OK_TRAILERS
      : [['grpc-status', String(status.code)], ['grpc-message', encodeStatusMessage(status.message)]];
    if (!this.stream.headersSent) {
      // Trailers-only: the status travels in the response headers.
      this.stream.respond([...RESPONSE_HEADERS, ...trailers], true);
      return;
    }
    this.stream.end(trailers);
  }

  private onData(chunk: Buffer): void {
    if (this.failure || this.finished) return;
    let messages: Buffer[];
    try {
      messages = this.reader.push(chunk);
    } catch (err) {
      this.fail(err instanceof CallError ? err : new CallError(Code.INTERNAL, String(err)));
      return;
    }
    for (const m of messages) {
      const pull = this.pull;
      this.pull = undefined;
      if (pull) pull.resolve({ value: m, done: false });
      else this.queue.push(m);
    }
    // Back-pressure: stop reading (and so stop granting window) while messages pile up.
    if (this.queue.length >= 4) this.stream.pause();
  }

  private fail(err: CallError): void {
    this.failure = err;
    const pull = this.pull;
    this.pull = undefined;
    if (pull) pull.reject(err);
    else if (!this.queue.length) {
      // Nobody is reading the request (a unary handler already running): end the call here.
      this.finish({ code: err.code, message: err.message });
    }
  }

  private deliverEnd(): void {
    // A failure never leaves a reader waiting (fail() rejects it), so a waiting reader here
    // is owed the end of the stream.
    const pull = this.pull;
    if (!pull || this.queue.length) return;
    this.pull = undefined;
    pull.resolve({ value: undefined, done: true });
  }

  private cancel(): void {
    if (this.isCancelled) return;
    this.isCancelled = true;
    const listeners = this.cancelListeners;
    this.cancelListeners = [];
    for (const l of listeners) l();
  }
}

type HeaderList = readonly (readonly [string, string])[];

/** Frozen, so the HTTP/2 layer encodes each of these lists once (see encodeHeaders). */
const frozenList = (fields: [string, string][]): HeaderList => Object.freeze(fields.map((f) => Object.freeze(f)));

const RESPONSE_HEADERS = frozenList([
  [':status', '200'],
  ['content-type', 'application/grpc+proto'],
  ['grpc-accept-encoding', 'identity,deflate,gzip'],
]);

const OK_TRAILERS = frozenList([['grpc-status', '0'], ['grpc-message', '']]);
