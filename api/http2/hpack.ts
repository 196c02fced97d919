/**
 * HPACK (RFC 7541) for the server's side of a connection: a decoder with the static and
 * dynamic tables and Huffman-coded strings (gRPC clients use both), and an encoder that sends
 * every field as a literal that is never added to the peer's dynamic table. The responses of
 * a gRPC server are a few short fields, so the encoder's simplicity costs a few bytes per
 * response on a local socket and no state that the peer's table size settings could upset.
 */
import { huffmanDecode } from './huffman.js';

/** The static table (RFC 7541 appendix A); index 1 is the first entry. */
// prettier-ignore
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''],
  ['cache-control', ''], ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''],
  ['content-length', ''], ['content-location', ''], ['content-range', ''], ['content-type', ''],
  ['cookie', ''], ['date', ''], ['etag', ''], ['expect', ''], ['expires', ''], ['from', ''], ['host', ''],
  ['if-match', ''], ['if-modified-since', ''], ['if-none-match', ''], ['if-range', ''],
  ['if-unmodified-since', ''], ['last-modified', ''], ['link', ''], ['location', ''], ['max-forwards', ''],
  ['proxy-authenticate', ''], ['proxy-authorization', ''], ['range', ''], ['referer', ''], ['refresh', ''],
  ['retry-after', ''], ['server', ''], ['set-cookie', ''], ['strict-transport-security', ''],
  ['transfer-encoding', ''], ['user-agent', ''], ['vary', ''], ['via', ''], ['www-authenticate', ''],
];

/** What an entry costs in a dynamic table: its octets plus a fixed 32 (RFC 7541 4.1). */
const ENTRY_OVERHEAD = 32;

export class HpackError extends Error {}

export type HeaderList = [name: string, value: string][];

/** Decodes header blocks of one connection, in order (the dynamic table spans them). */
export class HpackDecoder {
  /** Newest first. */
  private dynamic: [string, string][] = [];
  private size = 0;
  private maxSize: number;

  /**
   * @param limit the table size this endpoint allows (its SETTINGS_HEADER_TABLE_SIZE)
   * @param maxListBytes bound on the decoded fields of one block (names + values + 32 each)
   */
  constructor(private readonly limit = 4096, private readonly maxListBytes = 1 << 20) {
    this.maxSize = limit;
  }

  decode(block: Uint8Array): HeaderList {
    const out: HeaderList = [];
    let listBytes = 0;
    let pos = 0;
    let fieldsSeen = false;
    const integer = (prefixBits: number): number => {
      const max = (1 << prefixBits) - 1;
      let value = block[pos++]! & max;
      if (value < max) return value;
      let shift = 0;
      for (;;) {
        if (pos >= block.length) throw new HpackError('truncated integer in header block');
        const b = block[pos++]!;
        value += (b & 0x7f) * 2 ** shift;
        shift += 7;
        if (value > 0xffffffff) throw new HpackError('integer overflow in header block');
        if ((b & 0x80) === 0) return value;
      }
    };
    const string = (): string => {
      if (pos >= block.length) throw new HpackError('truncated string in header block');
      const huffman = (block[pos]! & 0x80) !== 0;
      const length = integer(7);
      if (pos + length > block.length) throw new HpackError('truncated string in header block');
      const raw = block.subarray(pos, pos + length);
      pos += length;
      try {
        return (huffman ? huffmanDecode(raw) : Buffer.from(raw.buffer, raw.byteOffset, raw.length)).toString('latin1');
      } catch (err) {
        throw new HpackError((err as Error).message);
      }
    };
    while (pos < block.length) {
      const b = block[pos]!;
      let name: string;
      let value: string;
      if (b & 0x80) {
        [name, value] = this.entry(integer(7));
      } else if (b & 0x40) {
        const index = integer(6);
        name = index ? this.entry(index)[0] : string();
        value = string();
        this.add(name, value);
      } else if (b & 0x20) {
        // A size update is only allowed before the block's first field.
        if (fieldsSeen) throw new HpackError('dynamic table size update after a header field');
        const size = integer(5);
        if (size > this.limit) throw new HpackError(`dynamic table size ${size} exceeds the limit ${this.limit}`);
        this.maxSize = size;
        this.evict(0);
        continue;
      } else {
        // Literal without indexing (0000) or never indexed (0001): same layout.
        const index = integer(4);
        name = index ? this.entry(index)[0] : string();
        value = string();
      }
      fieldsSeen = true;
      listBytes += name.length + value.length + ENTRY_OVERHEAD;
      if (listBytes > this.maxListBytes) throw new HpackError(`header list larger than ${this.maxListBytes} bytes`);
      out.push([name, value]);
    }
    return out;
  }

  private entry(index: number): readonly [string, string] {
    if (index === 0) throw new HpackError('header index 0');
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1]!;
    const e = this.dynamic[index - STATIC_TABLE.length - 1];
    if (!e) throw new HpackError(`header index ${index} is outside the tables`);
    return e;
  }

  private add(name: string, value: string): void {
    const cost = name.length + value.length + ENTRY_OVERHEAD;
    this.evict(cost);
    // An entry larger than the whole table empties it and is not added (RFC 7541 4.4).
    if (cost > this.maxSize) return;
    this.dynamic.unshift([name, value]);
    this.size += cost;
  }

  /** Evicts the oldest entries until `room` more octets fit. */
  private evict(room: number): void {
    while (this.size + room > this.maxSize && this.dynamic.length) {
      const [n, v] = this.dynamic.pop()!;
      this.size -= n.length + v.length + ENTRY_OVERHEAD;
    }
  }
}

const STATIC_NAME_INDEX = new Map<string, number>();
for (let i = STATIC_TABLE.length - 1; i >= 0; i--) STATIC_NAME_INDEX.set(STATIC_TABLE[i]![0], i + 1);
const STATUS_200_INDEX = 8;

function pushInteger(out: number[], first: number, prefixBits: number, value: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(first | value);
    return;
  }
  out.push(first | max);
  value -= max;
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
}

function pushString(out: number[], text: string): void {
  const bytes = Buffer.from(text, 'latin1');
  pushInteger(out, 0, 7, bytes.length);
  for (const b of bytes) out.push(b);
}

/** Blocks of frozen header lists, encoded once (the encoding depends on nothing else). */
const frozenBlocks = new WeakMap<object, Buffer>();

/**
 * Encodes a header list (names lower-case, values Latin-1) as literals never added to the
 * dynamic table, naming a static entry where one has the name. `:status: 200` is one octet.
 * A frozen list (the response headers and OK trailers every gRPC call sends) is encoded
 * once and its block shared; callers must not modify the returned buffer.
 */
export function encodeHeaders(fields: readonly (readonly [string, string])[]): Buffer {
  if (!Object.isFrozen(fields)) return encodeBlock(fields);
  let block = frozenBlocks.get(fields);
  if (!block) frozenBlocks.set(fields, (block = encodeBlock(fields)));
  return block;
}

function encodeBlock(fields: readonly (readonly [string, string])[]): Buffer {
  const out: number[] = [];
  for (const [name, value] of fields) {
    if (name === ':status' && value === '200') {
      out.push(0x80 | STATUS_200_INDEX);
      continue;
    }
    const index = STATIC_NAME_INDEX.get(name);
    if (index !== undefined) {
      pushInteger(out, 0x00, 4, index);
    } else {
      out.push(0x00);
      pushString(out, name);
    }
    pushString(out, value);
  }
  return Buffer.from(out);
}
