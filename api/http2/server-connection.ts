/**
 * The server side of one HTTP/2 connection (RFC 9113), as much of it as a gRPC server needs:
 * streams opened by the client's HEADERS, request bodies in DATA, responses as HEADERS, DATA
 * and trailing HEADERS, flow control in both directions, SETTINGS, PING, RST_STREAM and
 * GOAWAY. No server push, no priorities (PRIORITY is read and ignored).
 *
 * Why not node:http2: every `ctr` command is a new connection carrying a dozen short calls,
 * and Node's module wraps each stream in a Duplex with its event plumbing and header objects;
 * that machinery was the largest single item of the daemon's CPU per `ctr run`. Here a frame
 * is parsed where it lies in the socket's buffer, request bytes reach the call as views of it
 * (DATA payloads are handed on as they arrive, whole frames or not), and every frame a tick
 * produces leaves in one corked write.
 */
import type { Socket } from 'node:net';
import {
  CLIENT_PREFACE, DEFAULT_MAX_FRAME, DEFAULT_WINDOW, ErrorCode, Flag, FRAME_HEADER, FrameType, MAX_WINDOW, Setting,
  frame, frameHeader, goawayFrame, rstStreamFrame, settingsFrame, windowUpdateFrame,
} from './frames.js';
import { HpackDecoder, HpackError, type HeaderList } from './hpack.js';
import { ServerStream, STREAM_HIGH_WATER } from './server-stream.js';

export interface ServerConnectionOptions {
  /** Receive window of each stream (announced as SETTINGS_INITIAL_WINDOW_SIZE). */
  streamWindow: number;
  /** Receive window of the whole connection. */
  connectionWindow: number;
  /** Largest header list a request may carry (decoded). */
  maxHeaderListSize?: number;
  /** A client opened a stream; attach the handlers before returning. */
  onStream(stream: ServerStream): void;
  /** The connection is closed for a protocol error (the message names it; sent as GOAWAY). */
  onProtocolError?(message: string): void;
}

const EMPTY = Buffer.alloc(0);
/** Longest an acknowledgement waits for other frames to travel with (see holdAck). */
const ACK_DELAY_MS = 5;
/** Acknowledgements held back at most; a client pinging faster gets them at once. */
const MAX_HELD_ACKS = 4;
const joined = (parts: Buffer[]) => (parts.length === 0 ? EMPTY : parts.length === 1 ? parts[0]! : Buffer.concat(parts));

class ConnectionError extends Error {
  constructor(readonly code: ErrorCode, message: string) {
    super(message);
  }
}

export class ServerConnection {
  private readonly streams = new Map<number, ServerStream>();
  private readonly decoder: HpackDecoder;
  private input: Buffer | undefined;
  private prefaceSeen = false;
  /** The frame whose payload is being read: DATA payloads stream through, others are joined. */
  private current: { type: number; flags: number; streamId: number; remaining: number; parts: Buffer[]; padded: boolean } | undefined;
  /** Header block being assembled across CONTINUATION frames. */
  private headerBlock: { streamId: number; endStream: boolean; parts: Buffer[]; bytes: number } | undefined;
  private lastStreamId = 0;
  private goawaySent = false;
  private closedConnection = false;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = DEFAULT_MAX_FRAME;
  private sendWindow = DEFAULT_WINDOW;
  private recvWindow: number;
  private connConsumed = 0;
  private blocked = new Set<ServerStream>();
  private outq: Buffer[] = [];
  private heldAcks: Buffer[] = [];
  private heldAckTimer: NodeJS.Timeout | undefined;
  private outBytes = 0;
  private readonly maxHeaderListSize: number;
  /** Called once the connection is gone. */
  onclose: (() => void) | undefined;

  constructor(private readonly socket: Socket, private readonly opts: ServerConnectionOptions) {
    this.maxHeaderListSize = opts.maxHeaderListSize ?? 1 << 20;
    this.decoder = new HpackDecoder(4096, this.maxHeaderListSize);
    this.recvWindow = opts.connectionWindow;
    socket.setNoDelay?.(true);
    this.write(settingsFrame([
      [Setting.MAX_CONCURRENT_STREAMS, 0xffffffff],
      [Setting.INITIAL_WINDOW_SIZE, opts.streamWindow],
      [Setting.MAX_HEADER_LIST_SIZE, this.maxHeaderListSize],
    ]));
    if (opts.connectionWindow > DEFAULT_WINDOW) this.write(windowUpdateFrame(0, opts.connectionWindow - DEFAULT_WINDOW));
    socket.on('data', (chunk: Buffer) => this.onSocketData(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => this.teardown());
  }

  /** Stops taking new streams (GOAWAY); the open ones finish, then the connection closes. */
  shutdown(): void {
    if (this.closedConnection) return;
    if (!this.goawaySent) {
      this.goawaySent = true;
      this.write(goawayFrame(this.lastStreamId, ErrorCode.NO_ERROR));
    }
    if (this.streams.size === 0) this.endSocket();
  }

  destroy(): void {
    this.socket.destroy();
  }

  // ---- receiving ----

  private onSocketData(chunk: Buffer): void {
    let buf = this.input ? Buffer.concat([this.input, chunk]) : chunk;
    this.input = undefined;
    try {
      if (!this.prefaceSeen) {
        if (buf.length < CLIENT_PREFACE.length) {
          if (!CLIENT_PREFACE.subarray(0, buf.length).equals(buf)) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'not an HTTP/2 client preface');
          this.input = buf;
          return;
        }
        if (!CLIENT_PREFACE.equals(buf.subarray(0, CLIENT_PREFACE.length))) {
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'not an HTTP/2 client preface');
        }
        this.prefaceSeen = true;
        buf = buf.subarray(CLIENT_PREFACE.length);
      }
      let pos = 0;
      while (pos < buf.length && !this.closedConnection) {
        const cur = this.current;
        if (cur) {
          const n = Math.min(cur.remaining, buf.length - pos);
          const piece = buf.subarray(pos, pos + n);
          pos += n;
          cur.remaining -= n;
          if (cur.type === FrameType.DATA && !cur.padded) {
            this.onDataBytes(cur.streamId, piece);
          } else {
            cur.parts.push(piece);
          }
          if (cur.remaining === 0) {
            this.current = undefined;
            this.onFrameEnd(cur.type, cur.flags, cur.streamId, joined(cur.parts));
          }
          continue;
        }
        if (buf.length - pos < FRAME_HEADER) {
          this.input = Buffer.from(buf.subarray(pos));
          return;
        }
        const length = (buf[pos]! << 16) | (buf[pos + 1]! << 8) | buf[pos + 2]!;
        const type = buf[pos + 3]!;
        const flags = buf[pos + 4]!;
        const streamId = buf.readUInt32BE(pos + 5) & MAX_WINDOW;
        pos += FRAME_HEADER;
        if (length > DEFAULT_MAX_FRAME) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, `frame of ${length} bytes`);
        if (this.headerBlock && type !== FrameType.CONTINUATION) {
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'header block interrupted by another frame');
        }
        const padded = type === FrameType.DATA && (flags & Flag.PADDED) !== 0;
        if (type === FrameType.DATA) this.onDataFrameStart(streamId, length);
        this.current = { type, flags, streamId, remaining: length, parts: [], padded };
        if (length === 0) {
          this.current = undefined;
          this.onFrameEnd(type, flags, streamId, EMPTY);
        }
      }
    } catch (err) {
      if (err instanceof ConnectionError) this.fail(err.code, err.message);
      else this.fail(ErrorCode.INTERNAL_ERROR, String(err));
    } finally {
      this.flushOutput();
    }
  }

  /** Flow control is charged for the whole frame, padding included, when it starts. */
  private onDataFrameStart(streamId: number, length: number): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'DATA on stream 0');
    this.recvWindow -= length;
    if (this.recvWindow < 0) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'connection window exceeded');
    const s = this.streams.get(streamId);
    if (s) {
      s.recvWindow -= length;
      if (s.recvWindow < 0) {
        this.resetStream(s, ErrorCode.FLOW_CONTROL_ERROR);
      }
    } else if (streamId > this.lastStreamId) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `DATA on idle stream ${streamId}`);
    }
    this.connConsumed += length;
    this.maybeCreditConnection();
  }

  private onDataBytes(streamId: number, bytes: Buffer): void {
    const s = this.streams.get(streamId);
    if (!s || s.remoteEnded) return;
    s.receive(bytes);
  }

  private onFrameEnd(type: number, flags: number, streamId: number, payload: Buffer): void {
    switch (type) {
      case FrameType.DATA: {
        const s = this.streams.get(streamId);
        if (flags & Flag.PADDED) {
          const pad = payload[0] ?? 0;
          if (1 + pad > payload.length) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'DATA padding longer than the frame');
          const body = payload.subarray(1, payload.length - pad);
          if (s && !s.remoteEnded) {
            s.receive(body);
            // The padding counted against the window but never reaches the reader.
            this.returnWindow(s, 1 + pad);
          }
        }
        if (s && (flags & Flag.END_STREAM)) this.remoteEnd(s);
        return;
      }
      case FrameType.HEADERS:
        return this.onHeaders(streamId, flags, payload);
      case FrameType.CONTINUATION: {
        const hb = this.headerBlock;
        if (!hb || hb.streamId !== streamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'unexpected CONTINUATION');
        hb.parts.push(payload);
        hb.bytes += payload.length;
        if (hb.bytes > this.maxHeaderListSize) throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, 'header block too large');
        if (flags & Flag.END_HEADERS) {
          this.headerBlock = undefined;
          this.onHeaderBlock(streamId, hb.endStream, Buffer.concat(hb.parts));
        }
        return;
      }
      case FrameType.PRIORITY:
        return;
      case FrameType.RST_STREAM: {
        if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'RST_STREAM of wrong length');
        const s = this.streams.get(streamId);
        if (s) this.closeStream(s, true);
        return;
      }
      case FrameType.SETTINGS:
        return this.onSettings(streamId, flags, payload);
      case FrameType.PING:
        if (payload.length !== 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'PING of wrong length');
        if (!(flags & Flag.ACK)) this.holdAck(frame(FrameType.PING, Flag.ACK, 0, payload));
        return;
      case FrameType.GOAWAY:
        // The client will open no more streams; the open ones finish as usual.
        return;
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(streamId, payload);
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'PUSH_PROMISE from a client');
      default:
        // Unknown frame types are ignored (RFC 9113 4.1).
        return;
    }
  }

  private onHeaders(streamId: number, flags: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'HEADERS on stream 0');
    let start = 0;
    let end = payload.length;
    if (flags & Flag.PADDED) {
      const pad = payload[0] ?? 0;
      start = 1;
      end -= pad;
    }
    if (flags & Flag.PRIORITY) start += 5;
    if (start > end) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'HEADERS padding or priority longer than the frame');
    const fragment = payload.subarray(start, end);
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (flags & Flag.END_HEADERS) this.onHeaderBlock(streamId, endStream, fragment);
    else this.headerBlock = { streamId, endStream, parts: [Buffer.from(fragment)], bytes: fragment.length };
  }

  private onHeaderBlock(streamId: number, endStream: boolean, block: Buffer): void {
    let fields: HeaderList;
    try {
      // Every block is decoded, even one for a stream that is refused: the table depends on it.
      fields = this.decoder.decode(block);
    } catch (err) {
      throw new ConnectionError(ErrorCode.COMPRESSION_ERROR, err instanceof HpackError ? err.message : String(err));
    }
    const existing = this.streams.get(streamId);
    if (existing) {
      // Trailers from the client: they must end the request.
      if (!endStream) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'second HEADERS without END_STREAM');
      this.remoteEnd(existing);
      return;
    }
    if (streamId <= this.lastStreamId || streamId % 2 === 0) {
      if (streamId % 2 === 0 || streamId > this.lastStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `bad stream id ${streamId}`);
      // A stream that already closed: ignore (it was reset or finished).
      return;
    }
    this.lastStreamId = streamId;
    if (this.goawaySent) {
      this.write(rstStreamFrame(streamId, ErrorCode.REFUSED_STREAM));
      return;
    }
    const s = new ServerStream(streamId, this, this.opts.streamWindow, this.peerInitialWindow);
    for (const [name, value] of fields) {
      const prev = s.headers[name];
      s.headers[name] = prev === undefined ? value : `${prev}, ${value}`;
    }
    this.streams.set(streamId, s);
    this.opts.onStream(s);
    if (endStream) this.remoteEnd(s);
  }

  private onSettings(streamId: number, flags: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & Flag.ACK) return;
    if (payload.length % 6 !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'SETTINGS of wrong length');
    for (let i = 0; i < payload.length; i += 6) {
      const id = payload.readUInt16BE(i);
      const value = payload.readUInt32BE(i + 2);
      if (id === Setting.INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'initial window too large');
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const s of this.streams.values()) s.sendWindow += delta;
      } else if (id === Setting.MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME || value > 16_777_215) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'bad MAX_FRAME_SIZE');
        this.peerMaxFrame = value;
      }
      // HEADER_TABLE_SIZE needs nothing: the encoder never uses the peer's dynamic table.
    }
    this.holdAck(frame(FrameType.SETTINGS, Flag.ACK, 0));
    this.flushBlocked();
  }

  private onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'WINDOW_UPDATE of wrong length');
    const increment = payload.readUInt32BE(0) & MAX_WINDOW;
    if (streamId === 0) {
      if (increment === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'connection window overflow');
      this.flushBlocked();
      return;
    }
    const s = this.streams.get(streamId);
    if (!s) return;
    if (increment === 0) return this.resetStream(s, ErrorCode.PROTOCOL_ERROR);
    s.sendWindow += increment;
    if (s.sendWindow > MAX_WINDOW) return this.resetStream(s, ErrorCode.FLOW_CONTROL_ERROR);
    this.flushStream(s);
  }

  private remoteEnd(s: ServerStream): void {
    // A stream whose response is complete is already closed (endedLocally): only open ones
    // and ones whose trailers wait for window get here.
    if (!s.remoteEnded) s.receiveEnd();
  }

  /**
   * Credits the client for bytes the reader took (batched: a WINDOW_UPDATE once half a window
   * is used) and, with `unread`, for bytes nobody will read (padding, discarded requests).
   */
  returnWindow(s: ServerStream, unread = 0): void {
    let credit = s.takeConsumed(this.opts.streamWindow / 2);
    credit += unread;
    if (credit > 0 && !s.closed && !s.remoteEnded) {
      s.recvWindow += credit;
      this.write(windowUpdateFrame(s.id, credit));
    }
  }

  private maybeCreditConnection(): void {
    if (this.connConsumed < this.opts.connectionWindow / 2) return;
    this.recvWindow += this.connConsumed;
    this.write(windowUpdateFrame(0, this.connConsumed));
    this.connConsumed = 0;
  }

  // ---- sending ----

  sendHeaders(s: ServerStream, block: Buffer, endStream: boolean): void {
    let flags = endStream ? Flag.END_STREAM : 0;
    let offset = 0;
    let type = FrameType.HEADERS;
    do {
      const n = Math.min(this.peerMaxFrame, block.length - offset);
      const last = offset + n >= block.length;
      if (last) flags |= Flag.END_HEADERS;
      this.write(frameHeader(n, type, flags, s.id));
      if (n) this.write(block.subarray(offset, offset + n));
      offset += n;
      type = FrameType.CONTINUATION;
      flags = 0;
    } while (offset < block.length);
  }

  sendData(s: ServerStream, data: Buffer): void {
    if (data.length === 0) return;
    s.pending.data.push(data);
    s.pending.bytes += data.length;
    this.flushStream(s);
  }

  /** Sends what the windows allow of a stream's queued output, then its trailers. */
  flushStream(s: ServerStream): void {
    const p = s.pending;
    while (p.data.length) {
      const budget = Math.min(this.sendWindow, s.sendWindow, this.peerMaxFrame);
      if (budget <= 0) {
        this.blocked.add(s);
        return;
      }
      // One frame may carry the end of one queued buffer and the start of the next (a
      // message's 5-byte prefix and its body travel together).
      const n = Math.min(budget, p.bytes);
      this.write(frameHeader(n, FrameType.DATA, 0, s.id));
      let left = n;
      while (left > 0) {
        const head = p.data[0]!;
        if (head.length <= left) {
          this.write(head);
          p.data.shift();
          left -= head.length;
        } else {
          this.write(head.subarray(0, left));
          p.data[0] = head.subarray(left);
          left = 0;
        }
      }
      p.bytes -= n;
      this.sendWindow -= n;
      s.sendWindow -= n;
      if (p.bytes < STREAM_HIGH_WATER && p.bytes + n >= STREAM_HIGH_WATER) queueMicrotask(() => s.ondrain?.());
    }
    this.blocked.delete(s);
    if (p.trailers) {
      const trailers = p.trailers;
      p.trailers = undefined;
      this.sendHeaders(s, trailers, true);
      this.endedLocally(s);
    }
  }

  /** The response is complete: close, telling a client still sending to stop. */
  endedLocally(s: ServerStream): void {
    s.localEnded = true;
    if (!s.remoteEnded) this.write(rstStreamFrame(s.id, ErrorCode.NO_ERROR));
    this.closeStream(s, false);
  }

  resetStream(s: ServerStream, code: ErrorCode): void {
    this.write(rstStreamFrame(s.id, code));
    this.closeStream(s, true);
  }

  private flushBlocked(): void {
    for (const s of [...this.blocked]) {
      if (this.sendWindow <= 0) return;
      this.flushStream(s);
    }
  }

  private closeStream(s: ServerStream, aborted: boolean): void {
    if (s.closed) return;
    s.closed = true;
    s.aborted = aborted;
    this.streams.delete(s.id);
    this.blocked.delete(s);
    s.pending.data = [];
    s.pending.bytes = 0;
    s.onclose?.();
    s.ondrain?.();
    if (this.goawaySent && this.streams.size === 0) this.endSocket();
  }

  /**
   * An acknowledgement (of a PING or of the client's SETTINGS) rides along with the next
   * frames this connection sends, or leaves on its own after ACK_DELAY_MS. gRPC clients ping
   * after every response they receive (to estimate the bandwidth-delay product), and a Go
   * client's SETTINGS arrive just before its first request; an acknowledgement written on
   * its own is one more system call and, more costly, one more wake-up of the client (for a
   * `ctr` command, one per connection and one per call). RFC 9113 asks that acknowledgements
   * be sent promptly, ahead of other frames (they go first), not that they be sent alone; the
   * settings are applied before the acknowledgement is queued, so every frame sent after it
   * already follows them. The delay only makes a client's estimate of the round trip longer,
   * which can only make it grant larger windows.
   */
  private holdAck(ack: Buffer): void {
    this.heldAcks.push(ack);
    if (this.heldAcks.length >= MAX_HELD_ACKS) this.sendHeldAcks();
    else this.heldAckTimer ??= setTimeout(this.sendHeldAcks, ACK_DELAY_MS);
  }

  private readonly sendHeldAcks = (): void => {
    if (this.heldAckTimer) clearTimeout(this.heldAckTimer);
    this.heldAckTimer = undefined;
    const acks = this.heldAcks;
    if (!acks.length) return;
    this.heldAcks = [];
    for (const ack of acks) this.write(ack);
  };

  private write(buf: Buffer): void {
    if (this.closedConnection) return;
    if (this.heldAcks.length) this.sendHeldAcks();
    // At the end of this tick. (Waiting for the end of the event loop's turn, which would
    // also join a streamed read's data and trailers, made every ctr run ~10 ms slower: a
    // response then waits for everything else the turn has to do.)
    if (!this.outq.length) process.nextTick(this.flushOutput);
    this.outq.push(buf);
    this.outBytes += buf.length;
  }

  /**
   * Sends what this tick produced in one go: small output joined into one buffer (one write
   * request), large output (a big message) as a corked series of writes, without copying.
   */
  private readonly flushOutput = (): void => {
    const q = this.outq;
    if (!q.length) return;
    this.outq = [];
    const bytes = this.outBytes;
    this.outBytes = 0;
    if (this.socket.destroyed) return;
    if (q.length === 1) {
      this.socket.write(q[0]!);
    } else if (bytes <= 64 * 1024) {
      this.socket.write(Buffer.concat(q, bytes));
    } else {
      this.socket.cork();
      for (const b of q) this.socket.write(b);
      this.socket.uncork();
    }
  };

  private fail(code: ErrorCode, message: string): void {
    if (this.closedConnection) return;
    this.opts.onProtocolError?.(message);
    this.write(goawayFrame(this.lastStreamId, code, message));
    this.goawaySent = true;
    this.endSocket();
    this.teardown();
  }

  private endSocket(): void {
    this.flushOutput();
    this.socket.end();
  }

  private teardown(): void {
    if (this.closedConnection) return;
    this.closedConnection = true;
    if (this.heldAckTimer) clearTimeout(this.heldAckTimer);
    for (const s of [...this.streams.values()]) this.closeStream(s, true);
    this.onclose?.();
  }
}
