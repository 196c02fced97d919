/** One accepted ttrpc connection: decodes request frames, runs them concurrently, writes responses. */
import type { Socket } from 'node:net';
import { Request, Response } from '../gen/ttrpc/ttrpc.js';
import { CanceledError, DeadlineExceededError, messageOf } from '../../core/errdefs/errdefs.js';
import { encodeFrame, FrameDecoder, MAX_PAYLOAD_LENGTH, MessageType, type DecodedFrame } from './frame.js';
import { Code, errorResponse } from './status.js';

/** Runs one decoded request; resolves with the response envelope, never rejects. */
export type Dispatch = (request: Request, signal: AbortSignal) => Promise<Response>;

// setTimeout cannot wait longer than this; a longer deadline is effectively none.
const MAX_TIMER_MS = 2 ** 31 - 1;

export class ServerConnection {
  private readonly decoder = new FrameDecoder();
  private readonly inflight = new Set<AbortController>();
  private closeWhenIdle = false;
  readonly closed: Promise<void>;

  constructor(private readonly socket: Socket, private readonly dispatch: Dispatch) {
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => {
      for (const frame of this.decoder.push(chunk)) this.onFrame(frame);
    });
    // Errors (ECONNRESET, EPIPE) are always followed by 'close', where the cleanup happens.
    socket.on('error', () => {});
    socket.once('close', () => this.abortAll(new CanceledError('ttrpc: connection closed')));
  }

  /** Ends the connection as soon as no request is in flight (immediately if idle). */
  shutdownWhenIdle(): void {
    this.closeWhenIdle = true;
    if (this.inflight.size === 0) this.socket.end();
  }

  /** Ends the connection now; handlers still running see their signal aborted. */
  destroy(): void {
    this.socket.destroy();
  }

  private onFrame(frame: DecodedFrame): void {
    const { streamId, type } = frame.header;
    if (frame.oversized) {
      const message = `message length ${frame.header.length} exceed maximum message size of ${MAX_PAYLOAD_LENGTH}`;
      this.reply(streamId, errorResponse(Code.RESOURCE_EXHAUSTED, message));
      return;
    }
    // Other message types are skipped rather than fatal, leaving room for protocol extensions.
    if (type !== MessageType.REQUEST) return;
    let request: Request;
    try {
      request = Request.decode(frame.payload);
    } catch (err) {
      this.reply(streamId, errorResponse(Code.INVALID_ARGUMENT, `unmarshal request error: ${messageOf(err)}`));
      return;
    }
    if (streamId % 2 !== 1) {
      this.reply(streamId, errorResponse(Code.INVALID_ARGUMENT, 'StreamID must be odd for client initiated streams'));
      return;
    }
    void this.run(streamId, request);
  }

  private async run(streamId: number, request: Request): Promise<void> {
    const controller = new AbortController();
    this.inflight.add(controller);
    const timer = this.startDeadline(controller, request.timeoutNano);
    let response: Response;
    try {
      response = await this.dispatch(request, controller.signal);
    } catch (err) {
      response = errorResponse(Code.INTERNAL, messageOf(err)); // dispatch should not throw; stay answerable if it does
    }
    if (timer) clearTimeout(timer);
    this.inflight.delete(controller);
    this.reply(streamId, response);
    if (this.closeWhenIdle && this.inflight.size === 0) this.socket.end();
  }

  private startDeadline(controller: AbortController, timeoutNano: number): NodeJS.Timeout | undefined {
    // 0 means no deadline; a negative value means the client's deadline already passed.
    if (timeoutNano === 0) return undefined;
    const expire = () => controller.abort(new DeadlineExceededError('context deadline exceeded'));
    const ms = Math.ceil(timeoutNano / 1e6);
    if (ms <= 0) {
      expire();
      return undefined;
    }
    return ms > MAX_TIMER_MS ? undefined : setTimeout(expire, ms);
  }

  private reply(streamId: number, response: Response): void {
    if (!this.socket.writable) return;
    this.socket.write(encodeFrame(streamId, MessageType.RESPONSE, Response.encode(response).finish()));
  }

  private abortAll(reason: Error): void {
    for (const controller of this.inflight) controller.abort(reason);
  }
}
