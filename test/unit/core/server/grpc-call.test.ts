import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { describe, it } from 'node:test';
import { Code } from '../../../../core/errdefs/errdefs.js';
import { CallError, encodeStatusMessage, MessageReader, parseTimeout } from '../../../../core/server/grpc-call.js';

/** A gRPC length-prefixed message. */
function framed(body: Buffer, compressed = false): Buffer {
  const prefix = Buffer.alloc(5);
  prefix[0] = compressed ? 1 : 0;
  prefix.writeUInt32BE(body.length, 1);
  return Buffer.concat([prefix, body]);
}

describe('MessageReader', () => {
  it('splits a stream into messages however it is cut', () => {
    const bodies = [Buffer.from('first'), Buffer.alloc(0), Buffer.alloc(70_000, 7), Buffer.from('last')];
    const stream = Buffer.concat(bodies.map((b) => framed(b)));
    for (const cut of [1, 3, 5, 16_384, stream.length]) {
      const reader = new MessageReader(1 << 20, undefined);
      const got: Buffer[] = [];
      for (let i = 0; i < stream.length; i += cut) got.push(...reader.push(stream.subarray(i, i + cut)));
      assert.deepEqual(got, bodies, `pieces of ${cut} bytes`);
      assert.equal(reader.pending, 0);
    }
  });

  it('counts the bytes of an unfinished message', () => {
    const reader = new MessageReader(1 << 20, undefined);
    assert.deepEqual(reader.push(framed(Buffer.from('abcdef')).subarray(0, 8)), []);
    assert.equal(reader.pending, 8);
  });

  it('refuses a message over the limit from its prefix, before the body arrives', () => {
    const reader = new MessageReader(10, undefined);
    assert.throws(() => reader.push(framed(Buffer.alloc(11)).subarray(0, 5)), (e: CallError) => {
      assert.equal(e.code, Code.RESOURCE_EXHAUSTED);
      assert.match(e.message, /Received message larger than max \(11 vs\. 10\)/);
      return true;
    });
  });

  it('decompresses gzip messages, bounded by the limit', () => {
    const body = Buffer.alloc(1000, 'a');
    assert.deepEqual(new MessageReader(1 << 20, 'gzip').push(framed(gzipSync(body), true)), [body]);
    assert.throws(() => new MessageReader(100, 'gzip').push(framed(gzipSync(body), true)), { code: Code.RESOURCE_EXHAUSTED });
    assert.throws(() => new MessageReader(1 << 20, 'gzip').push(framed(Buffer.from('not gzip'), true)), { code: Code.INTERNAL });
  });

  it('refuses a compressed message without an encoding', () => {
    assert.throws(() => new MessageReader(1 << 20, undefined).push(framed(Buffer.from('x'), true)), { code: Code.INTERNAL });
  });
});

describe('status messages and timeouts', () => {
  it('percent-encodes what HTTP/2 headers cannot carry, and "%"', () => {
    assert.equal(encodeStatusMessage('not found: sha256:ab'), 'not found: sha256:ab');
    assert.equal(encodeStatusMessage('100% done'), '100%25 done');
    assert.equal(encodeStatusMessage('line\nbreak é'), 'line%0Abreak %C3%A9');
  });

  it('reads grpc-timeout values in every unit', () => {
    assert.equal(parseTimeout('2S'), 2000);
    assert.equal(parseTimeout('150m'), 150);
    assert.equal(parseTimeout('1H'), 3_600_000);
    assert.equal(parseTimeout('3M'), 180_000);
    assert.equal(parseTimeout('5000u'), 5);
    assert.equal(parseTimeout('1000000n'), 1);
    for (const bad of [undefined, '', '10', 'S', '123456789S', '1s', '-1S']) assert.equal(parseTimeout(bad), undefined, String(bad));
  });
});
