/** ttrpc client: many concurrent unary calls multiplexed over one socket by stream id. */
import { createConnection, type Socket } from 'node:net';
import { Request, Response } from '../gen/ttrpc/ttrpc.js';
import {
  CanceledError,
  DeadlineExceededError,
  messageOf,
  ResourceExhaustedError,
  UnavailableError,
} from '../../core/errdefs/errdefs.js';
import { socketPath } from './address.js';
import { encodeFrame, FrameDecoder, MAX_PAYLOAD_LENGTH, MessageType, type DecodedFrame } from './frame.js';
import { toKeyValues, type MetadataInit } from './metadata.js';
import { errorFromStatus, isOk, TtrpcClosedError } from './status.js';

export interface ConnectOptions {
  /** Give up connecting after this long. */
  timeoutMs?: number;
}

export interface CallOptions {
  /** Deadline for the call; also sent to the server as timeout_nano. */
  timeoutMs?: number;
  metadata?: MetadataInit;
  signal?: AbortSignal;
}

interface PendingCall {
  resolve(payload: Buffer): void;
  reject(err: Error): void;
}

/** Stream ids are uint32 on the wire; client ids are odd and wrap like the Go counter does. */
const STREAM_ID_LIMIT = 2 ** 32;

export class TtrpcClient {
  private readonly decoder = new FrameDecoder();
  private readonly pending = new Map<number, PendingCall>();
  private readonly closeCallbacks: Array<() => void> = [];
  private nextStreamId = 1;
  private closeCause: Error | undefined;
  private isClosed = false;

  /** Wraps an already-connected socket (e.g. one end of a socketpair handed to a shim). */
  constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const frame of this.decoder.push(chunk)) this.onFrame(frame);
    });
    socket.on('error', (err) => (this.closeCause ??= err));
    socket.once('close', () => this.onSocketClosed());
  }

  static async connect(address: string, options: ConnectOptions = {}): Promise<TtrpcClient> {
    const socket = createConnection({ path: socketPath(address) });
    await new Promise<void>((resolve, reject) => {
      const fail = (err: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(new UnavailableError(`ttrpc: dial ${address}: ${err.message}`, { cause: err }));
      };
      const timer = options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => fail(new Error(`timed out after ${options.timeoutMs}ms`)), options.timeoutMs);
      socket.once('error', fail);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', fail);
        resolve();
      });
    });
    return new TtrpcClient(socket);
  }

  /** True once the connection is gone; every later call rejects with TtrpcClosedError. */
  get closed(): boolean {
    return this.isClosed;
  }

  /**
   * Sends one request and resolves with the response payload. A non-OK status rejects with
   * the errdefs error for its code (`err.code` is the numeric status code).
   */
  call(service: string, method: string, payload: Uint8Array, options: CallOptions = {}): Promise<Buffer> {
    if (this.isClosed) return Promise.reject(new TtrpcClosedError({ cause: this.closeCause }));
    const { signal, timeoutMs } = options;
    if (signal?.aborted) return Promise.reject(new CanceledError('context canceled', { cause: signal.reason }));

    const request = Request.encode({
      service,
      method,
      payload: Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength),
      timeoutNano: timeoutMs === undefined ? 0 : Math.round(timeoutMs * 1e6),
      metadata: options.metadata ? toKeyValues(options.metadata) : [],
    }).finish();
    // The server would discard it and answer RESOURCE_EXHAUSTED anyway; fail without sending.
    if (request.length > MAX_PAYLOAD_LENGTH) {
      return Promise.reject(new ResourceExhaustedError(
        `message length ${request.length} exceed maximum message size of ${MAX_PAYLOAD_LENGTH}`,
      ));
    }

    const streamId = this.allocateStreamId();
    return new Promise<Buffer>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => settle(() => reject(new CanceledError('context canceled', { cause: signal?.reason })));
      const settle = (finish: () => void) => {
        if (this.pending.get(streamId) !== call) return;
        this.pending.delete(streamId);
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        finish();
      };
      const call: PendingCall = {
        resolve: (bytes) => settle(() => resolve(bytes)),
        reject: (err) => settle(() => reject(err)),
      };
      this.pending.set(streamId, call);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => call.reject(new DeadlineExceededError('context deadline exceeded')), timeoutMs);
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.socket.write(encodeFrame(streamId, MessageType.REQUEST, request));
    });
  }

  /** Closes the connection; pending calls reject with TtrpcClosedError. */
  close(): void {
    this.socket.destroy();
  }

  /** Runs `callback` once when the connection closes, for whatever reason (at once if already closed). */
  onClose(callback: () => void): void {
    if (this.isClosed) queueMicrotask(callback);
    else this.closeCallbacks.push(callback);
  }

  private allocateStreamId(): number {
    // Skipping ids still in use only matters after 2^31 calls on one connection.
    let id = this.nextStreamId;
    while (this.pending.has(id)) id = (id + 2) % STREAM_ID_LIMIT;
    this.nextStreamId = (id + 2) % STREAM_ID_LIMIT;
    return id;
  }

  private onFrame(frame: DecodedFrame): void {
    const call = this.pending.get(frame.header.streamId);
    if (!call) return; // Late answer to a call that already timed out or was cancelled.
    if (frame.oversized) {
      call.reject(new ResourceExhaustedError(
        `message length ${frame.header.length} exceed maximum message size of ${MAX_PAYLOAD_LENGTH}`,
      ));
      return;
    }
    if (frame.header.type !== MessageType.RESPONSE) {
      call.reject(new Error(`ttrpc: unknown message type ${frame.header.type} received`));
      return;
    }
    let response: Response;
    try {
      response = Response.decode(frame.payload);
    } catch (err) {
      call.reject(new Error(`ttrpc: failed to decode response: ${messageOf(err)}`));
      return;
    }
    if (isOk(response.status)) call.resolve(response.payload);
    else call.reject(errorFromStatus(response.status!));
  }

  private onSocketClosed(): void {
    this.isClosed = true;
    for (const call of [...this.pending.values()]) call.reject(new TtrpcClosedError({ cause: this.closeCause }));
    for (const callback of this.closeCallbacks.splice(0)) callback();
  }
}
