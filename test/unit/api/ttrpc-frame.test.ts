import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  decodeHeader,
  encodeFrame,
  encodeHeader,
  FrameDecoder,
  HEADER_LENGTH,
  MAX_PAYLOAD_LENGTH,
  MessageType,
  type DecodedFrame,
} from '../../../api/ttrpc/frame.js';

function pushAll(decoder: FrameDecoder, chunks: Buffer[]): DecodedFrame[] {
  return chunks.flatMap((chunk) => decoder.push(chunk));
}

function bytewise(buffer: Buffer): Buffer[] {
  return [...buffer].map((byte) => Buffer.from([byte]));
}

describe('ttrpc frame encoding', () => {
  it('writes a 10-byte big-endian header followed by the payload', () => {
    const frame = encodeFrame(0x01020305, MessageType.REQUEST, Buffer.from('hi'));
    assert.deepEqual(
      [...frame],
      [0, 0, 0, 2, 0x01, 0x02, 0x03, 0x05, 1, 0, 0x68, 0x69],
    );
  });

  it('round-trips header fields at their extremes', () => {
    const header = { length: MAX_PAYLOAD_LENGTH, streamId: 0xffffffff, type: 0xff, flags: 0xff };
    const bytes = encodeHeader(header);
    assert.equal(bytes.length, HEADER_LENGTH);
    assert.deepEqual(decodeHeader(bytes), header);
  });
});

describe('FrameDecoder', () => {
  const first = encodeFrame(1, MessageType.REQUEST, Buffer.from('first payload'));
  const empty = encodeFrame(3, MessageType.REQUEST, Buffer.alloc(0));
  const second = encodeFrame(5, MessageType.RESPONSE, Buffer.from('second'));
  const stream = Buffer.concat([first, empty, second]);

  function assertThreeFrames(frames: DecodedFrame[]) {
    assert.deepEqual(
      frames.map((f) => (f.oversized ? 'oversized' : [f.header.streamId, f.header.type, f.payload.toString()])),
      [[1, 1, 'first payload'], [3, 1, ''], [5, 2, 'second']],
    );
  }

  it('decodes several frames merged in one chunk', () => {
    const decoder = new FrameDecoder();
    assertThreeFrames(decoder.push(stream));
    assert.ok(decoder.idle);
  });

  it('decodes frames delivered one byte at a time', () => {
    const decoder = new FrameDecoder();
    assertThreeFrames(pushAll(decoder, bytewise(stream)));
    assert.ok(decoder.idle);
  });

  it('decodes frames split at every possible boundary', () => {
    for (let cut = 1; cut < stream.length; cut++) {
      const decoder = new FrameDecoder();
      assertThreeFrames(pushAll(decoder, [stream.subarray(0, cut), stream.subarray(cut)]));
    }
  });

  it('reports a partial frame as not idle', () => {
    const decoder = new FrameDecoder();
    assert.deepEqual(decoder.push(first.subarray(0, HEADER_LENGTH + 2)), []);
    assert.equal(decoder.idle, false);
  });

  it('does not alias the pushed chunk', () => {
    const decoder = new FrameDecoder();
    const chunk = Buffer.from(first);
    const [frame] = decoder.push(chunk);
    chunk.fill(0);
    assert.ok(frame && !frame.oversized);
    assert.equal(frame.payload.toString(), 'first payload');
  });

  it('accepts a payload of exactly the limit', () => {
    const decoder = new FrameDecoder(8);
    const [frame] = decoder.push(encodeFrame(1, MessageType.REQUEST, Buffer.alloc(8, 7)));
    assert.ok(frame && !frame.oversized);
    assert.equal(frame.payload.length, 8);
  });

  it('skips an oversized payload across chunks, then resumes on the next frame', () => {
    const decoder = new FrameDecoder(8);
    const big = encodeFrame(7, MessageType.REQUEST, Buffer.alloc(9, 1));
    const next = encodeFrame(9, MessageType.REQUEST, Buffer.from('fits'));
    const frames = pushAll(decoder, [...bytewise(Buffer.concat([big, next.subarray(0, 3)])), next.subarray(3)]);
    assert.equal(frames.length, 2);
    assert.deepEqual(frames[0], { oversized: true, header: { length: 9, streamId: 7, type: 1, flags: 0 } });
    assert.ok(frames[1] && !frames[1].oversized);
    assert.equal(frames[1].payload.toString(), 'fits');
  });

  it('uses a 4 MiB limit by default', () => {
    const decoder = new FrameDecoder();
    const header = encodeHeader({ length: MAX_PAYLOAD_LENGTH + 1, streamId: 9, type: 1, flags: 0 });
    assert.deepEqual(decoder.push(header), []);
    assert.equal(MAX_PAYLOAD_LENGTH, 4 * 1024 * 1024);
    const frames = decoder.push(Buffer.alloc(MAX_PAYLOAD_LENGTH + 1));
    assert.equal(frames.length, 1);
    assert.equal(frames[0]?.oversized, true);
    assert.ok(decoder.idle);
  });
});
