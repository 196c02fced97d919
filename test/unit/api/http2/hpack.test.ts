// HPACK and its Huffman code (api/http2): the code rebuilt from its lengths against codes of the
// RFC 7541 table, the RFC's worked examples (appendix C: literals, the dynamic table across
// requests, Huffman strings), malformed input, and the encoder read back by the decoder.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeHeaders, HpackDecoder, HpackError } from '../../../../api/http2/hpack.js';
import { canonicalCodes, huffmanDecode } from '../../../../api/http2/huffman.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('HPACK Huffman code', () => {
  it('rebuilds the RFC 7541 codes from the code lengths', () => {
    const codes = canonicalCodes();
    // [symbol, code] pairs spread over every length, from RFC 7541 appendix B.
    const expected: [number, number][] = [
      [48, 0x0], [97, 0x3], [32, 0x14], [58, 0x5c], [38, 0xf8], [33, 0x3f8], [124, 0x7fc], [35, 0xffa],
      [0, 0x1ff8], [94, 0x3ffc], [60, 0x7ffc], [92, 0x7fff0], [128, 0xfffe6], [153, 0x1fffdc],
      [129, 0x3fffd2], [1, 0x7fffd8], [9, 0xffffea], [199, 0x1ffffec], [192, 0x3ffffe0],
      [203, 0x7ffffde], [2, 0xfffffe2], [255, 0x3ffffee], [254, 0x7fffff0], [10, 0x3ffffffc], [256, 0x3fffffff],
    ];
    for (const [sym, code] of expected) assert.equal(codes[sym], code, `symbol ${sym}`);
  });

  it('decodes the RFC examples', () => {
    assert.equal(huffmanDecode(hex('f1e3 c2e5 f23a 6ba0 ab90 f4ff')).toString(), 'www.example.com');
    assert.equal(huffmanDecode(hex('a8eb 1064 9cbf')).toString(), 'no-cache');
    assert.equal(huffmanDecode(hex('25a8 49e9 5ba9 7d7f')).toString(), 'custom-key');
    assert.equal(huffmanDecode(hex('25a8 49e9 5bb8 e8b4 bf')).toString(), 'custom-value');
    assert.equal(huffmanDecode(Buffer.alloc(0)).length, 0);
  });

  it('refuses padding that is not a prefix of EOS or longer than 7 bits, and EOS itself', () => {
    // '0' is 00000: the rest of the byte must be ones.
    assert.throws(() => huffmanDecode(Buffer.from([0b00000010])), /padding/);
    // A whole byte of ones after a complete symbol is 8 bits of padding.
    assert.throws(() => huffmanDecode(Buffer.from([0b00000111, 0xff])), /padding/);
    // EOS (30 ones) in the string.
    assert.throws(() => huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xfc])), /Huffman/);
  });
});

describe('HPACK decoder', () => {
  it('keeps the dynamic table across the header blocks of a connection (RFC 7541 C.3)', () => {
    const d = new HpackDecoder();
    assert.deepEqual(d.decode(hex('8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d')), [
      [':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'],
    ]);
    assert.deepEqual(d.decode(hex('8286 84be 5808 6e6f 2d63 6163 6865')), [
      [':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'], ['cache-control', 'no-cache'],
    ]);
    assert.deepEqual(d.decode(hex('8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65')), [
      [':method', 'GET'], [':scheme', 'https'], [':path', '/index.html'], [':authority', 'www.example.com'], ['custom-key', 'custom-value'],
    ]);
  });

  it('decodes Huffman-coded literals (RFC 7541 C.4)', () => {
    const d = new HpackDecoder();
    assert.deepEqual(d.decode(hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff')), [
      [':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'],
    ]);
    assert.deepEqual(d.decode(hex('8286 84be 5886 a8eb 1064 9cbf')).at(-1), ['cache-control', 'no-cache']);
  });

  it('evicts old entries as the table fills, and follows size updates', () => {
    const d = new HpackDecoder(4096);
    // Size update to 64 octets, then two incrementally indexed literals of 42 octets each:
    // the second evicts the first.
    const lit = (name: string, value: string) => Buffer.concat([Buffer.from([0x40, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
    d.decode(Buffer.concat([Buffer.from([0x3f, 0x21]), lit('aaaa', 'bbbbbb')]));
    d.decode(lit('cccc', 'dddddd'));
    assert.deepEqual(d.decode(Buffer.from([0x80 | 62])), [['cccc', 'dddddd']]);
    assert.throws(() => d.decode(Buffer.from([0x80 | 63])), HpackError);
  });

  it('refuses malformed blocks with an HpackError', () => {
    const bad = [
      '80', // index 0
      'ff', // truncated integer
      '41 05 6162', // truncated string
      'be', // index 62 with an empty dynamic table
      '82 3f e11f', // size update after a field
      '3f e21f', // size update beyond the limit (4096)
    ];
    for (const b of bad) assert.throws(() => new HpackDecoder().decode(hex(b)), HpackError, b);
    const small = new HpackDecoder(4096, 100);
    assert.throws(() => small.decode(Buffer.concat([Buffer.from([0x00, 1, 0x61, 0x7f, 0x01]), Buffer.alloc(128, 0x62)])), /header list larger/);
  });
});

describe('HPACK encoder', () => {
  it('encodes fields the decoder reads back, and :status 200 as one octet', () => {
    const fields: [string, string][] = [
      [':status', '200'], ['content-type', 'application/grpc+proto'], ['grpc-status', '5'],
      ['grpc-message', 'x'.repeat(300)], ['x-custom', ''],
    ];
    const block = encodeHeaders(fields);
    assert.equal(block[0], 0x88);
    assert.deepEqual(new HpackDecoder().decode(block), fields);
  });
});
