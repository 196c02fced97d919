/**
 * One stream of a server connection (server-connection.ts): a request coming in and the
 * response going out. The consumer (a gRPC call) sets plain callbacks instead of listening to
 * events: a stream lives for a few hundred microseconds and most of them carry one message.
 */
import type { ServerConnection } from './server-connection.js';
import { encodeHeaders } from './hpack.js';

/** Queued bytes per stream above which write() asks the caller to wait for ondrain. */
export const STREAM_HIGH_WATER = 256 * 1024;

/** Output waiting for send window: DATA bytes, then possibly the closing trailers. */
interface Pending {
  data: Buffer[];
  bytes: number;
  trailers?: Buffer;
}

/** One request/response exchange. Handlers are plain callbacks, set by the consumer. */
export class ServerStream {
  /**
   * Request headers, names in lower case; repeated names joined with ", ". No prototype: a
   * client's header may be called `constructor` or `__proto__`.
   */
  readonly headers: Record<string, string> = Object.create(null) as Record<string, string>;
  ondata: ((chunk: Buffer) => void) | undefined;
  /** The request side ended (the client sent END_STREAM). */
  onend: (() => void) | undefined;
  /** The stream is over: the response was sent, or it was reset, or the connection went. */
  onclose: (() => void) | undefined;
  /** Queued output fell back under the high-water mark. */
  ondrain: (() => void) | undefined;

  remoteEnded = false;
  localEnded = false;
  closed = false;
  /** Set when the stream ended by reset or connection loss rather than by its response. */
  aborted = false;
  private isPaused = false;
  private held: Buffer[] = [];
  private heldEnd = false;
  /** Request bytes delivered but not yet returned to the client as window. */
  private consumed = 0;
  /** Window the client may still use on this stream. */
  recvWindow: number;
  sendWindow: number;
  readonly pending: Pending = { data: [], bytes: 0 };
  headersSent = false;

  constructor(readonly id: number, private readonly conn: ServerConnection, recvWindow: number, sendWindow: number) {
    this.recvWindow = recvWindow;
    this.sendWindow = sendWindow;
  }

  get paused(): boolean {
    return this.isPaused;
  }

  /** Stops delivering request data (and so stops returning window to the client). */
  pause(): void {
    this.isPaused = true;
  }

  resume(): void {
    if (!this.isPaused) return;
    this.isPaused = false;
    const held = this.held;
    this.held = [];
    for (const chunk of held) {
      if (this.isPaused) {
        this.held.push(chunk);
        continue;
      }
      this.deliver(chunk);
    }
    if (this.heldEnd && !this.isPaused && !this.held.length) {
      this.heldEnd = false;
      this.onend?.();
    }
  }

  /** Sends the response headers; with `endStream` they are also the trailers (trailers-only). */
  respond(fields: readonly (readonly [string, string])[], endStream: boolean): void {
    if (this.closed || this.localEnded || this.headersSent) return;
    this.headersSent = true;
    this.conn.sendHeaders(this, encodeHeaders(fields), endStream);
    if (endStream) this.conn.endedLocally(this);
  }

  /** Queues response bytes; false when the caller should wait for ondrain. */
  write(data: Buffer): boolean {
    if (this.closed || this.localEnded) return true;
    this.conn.sendData(this, data);
    return this.pending.bytes < STREAM_HIGH_WATER;
  }

  /** Sends the trailers after all queued data, ending the response. */
  end(trailers: readonly (readonly [string, string])[]): void {
    if (this.closed || this.localEnded) return;
    this.localEnded = true;
    this.pending.trailers = encodeHeaders(trailers);
    this.conn.flushStream(this);
  }

  /** @internal request bytes from the connection. */
  receive(chunk: Buffer): void {
    if (this.localEnded) {
      // Nobody reads a request whose response is complete: return the window at once.
      this.conn.returnWindow(this, chunk.length);
      return;
    }
    if (this.isPaused) this.held.push(chunk);
    else this.deliver(chunk);
  }

  /** @internal the client's END_STREAM. */
  receiveEnd(): void {
    this.remoteEnded = true;
    if (this.isPaused && this.held.length) this.heldEnd = true;
    else this.onend?.();
  }

  private deliver(chunk: Buffer): void {
    this.consumed += chunk.length;
    this.conn.returnWindow(this);
    this.ondata?.(chunk);
  }

  /** @internal how many delivered bytes the client has not been credited for yet. */
  takeConsumed(threshold: number): number {
    if (this.consumed < threshold) return 0;
    const n = this.consumed;
    this.consumed = 0;
    return n;
  }
}

