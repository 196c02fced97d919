/**
 * ttrpc framing: every message on the socket is a 10-byte big-endian header
 * (payload length u32, stream id u32, message type u8, flags u8) followed by the payload.
 */

export const HEADER_LENGTH = 10;
/** Largest payload a peer accepts (4 MiB); bigger frames are skipped and answered with an error. */
export const MAX_PAYLOAD_LENGTH = 4 << 20;

export const MessageType = {
  REQUEST: 1,
  RESPONSE: 2,
} as const;

export interface FrameHeader {
  /** Payload length in bytes, header excluded. */
  length: number;
  streamId: number;
  type: number;
  flags: number;
}

export type DecodedFrame =
  | { oversized: false; header: FrameHeader; payload: Buffer }
  /** The payload exceeded the limit and its bytes were discarded. */
  | { oversized: true; header: FrameHeader };

export function encodeHeader(header: FrameHeader): Buffer {
  const bytes = Buffer.allocUnsafe(HEADER_LENGTH);
  bytes.writeUInt32BE(header.length, 0);
  bytes.writeUInt32BE(header.streamId, 4);
  bytes.writeUInt8(header.type, 8);
  bytes.writeUInt8(header.flags, 9);
  return bytes;
}

export function decodeHeader(bytes: Buffer): FrameHeader {
  return {
    length: bytes.readUInt32BE(0),
    streamId: bytes.readUInt32BE(4),
    type: bytes.readUInt8(8),
    flags: bytes.readUInt8(9),
  };
}

export function encodeFrame(streamId: number, type: number, payload: Uint8Array): Buffer {
  return Buffer.concat([encodeHeader({ length: payload.length, streamId, type, flags: 0 }), payload]);
}

/**
 * Incremental decoder for a byte stream that arrives in arbitrary chunks. An oversized
 * payload is skipped as it streams in rather than buffered, so a buggy or hostile peer
 * cannot make us hold more than the limit per connection.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Header of the frame whose payload is being collected or discarded. */
  private current: FrameHeader | undefined;
  private discarding = 0;

  constructor(private readonly maxPayload = MAX_PAYLOAD_LENGTH) {}

  /** Feeds a chunk and returns every frame it completed, in order. */
  push(chunk: Buffer): DecodedFrame[] {
    const frames: DecodedFrame[] = [];
    let offset = 0;
    while (offset < chunk.length) {
      if (this.discarding > 0) {
        const skipped = Math.min(this.discarding, chunk.length - offset);
        this.discarding -= skipped;
        offset += skipped;
        if (this.discarding === 0) frames.push({ oversized: true, header: this.takeCurrent() });
        continue;
      }
      const wanted = this.current ? this.current.length : HEADER_LENGTH;
      const taken = Math.min(wanted - this.buffered, chunk.length - offset);
      this.chunks.push(chunk.subarray(offset, offset + taken));
      this.buffered += taken;
      offset += taken;
      if (this.buffered < wanted) break;
      const bytes = this.takeBuffered();
      if (this.current) {
        frames.push({ oversized: false, header: this.takeCurrent(), payload: bytes });
      } else {
        const frame = this.onHeader(decodeHeader(bytes));
        if (frame) frames.push(frame);
      }
    }
    return frames;
  }

  /** True when no partial frame is held, i.e. the stream ended on a frame boundary. */
  get idle(): boolean {
    return !this.current && this.buffered === 0;
  }

  private onHeader(header: FrameHeader): DecodedFrame | undefined {
    if (header.length > this.maxPayload) {
      this.current = header;
      this.discarding = header.length;
      return undefined;
    }
    // An empty payload is complete as soon as its header is.
    if (header.length === 0) return { oversized: false, header, payload: Buffer.alloc(0) };
    this.current = header;
    return undefined;
  }

  private takeBuffered(): Buffer {
    // Always copy: a subarray would pin the whole socket chunk for as long as the frame lives.
    const bytes = Buffer.concat(this.chunks, this.buffered);
    this.chunks = [];
    this.buffered = 0;
    return bytes;
  }

  private takeCurrent(): FrameHeader {
    const header = this.current!;
    this.current = undefined;
    return header;
  }
}
