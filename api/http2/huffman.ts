/**
 * HPACK's static Huffman code (RFC 7541, appendix B), decode side. The code is canonical:
 * symbols sorted by code length, then by value, take consecutive codes. So the code lengths
 * alone define it, and the codes are rebuilt from them here once, into a table the decoder
 * walks a nibble at a time.
 */

/** Code length in bits of each symbol 0..255, then of EOS (256). */
// prettier-ignore
const CODE_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0x00
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 0x10
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //         0x20  !"#$%&'()*+,-./
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //              0x30 0-9:;<=>?
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //                0x40 @A-O
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //             0x50 P-Z[\]^_
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //                0x60 `a-o
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //            0x70 p-z{|}~ DEL
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 0x80
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 0x90
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 0xa0
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 0xb0
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 0xc0
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 0xd0
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 0xe0
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 0xf0
  30, //                                                             EOS
];

const EOS = 256;

/** The canonical codes: `codes[symbol]` (as a number; the longest is 30 bits). */
export function canonicalCodes(lengths: readonly number[] = CODE_LENGTHS): number[] {
  const order = lengths.map((len, sym) => ({ len, sym })).sort((a, b) => a.len - b.len || a.sym - b.sym);
  const codes = new Array<number>(lengths.length).fill(0);
  let code = 0;
  let len = order[0]!.len;
  for (let i = 0; i < order.length; i++) {
    const e = order[i]!;
    code *= 2 ** (e.len - len);
    len = e.len;
    codes[e.sym] = code;
    code += 1;
  }
  return codes;
}

/**
 * The decoding automaton: a binary tree of the codes, flattened, then turned into a table
 * that consumes four bits per step. Each state is a tree node; for each of the 16 nibbles a
 * step gives the next state, the symbol emitted on the way (or -1), and whether EOS was hit.
 * A state also records whether stopping there is a valid end of the string (RFC 7541 5.2:
 * at most 7 bits of padding, all ones, i.e. a prefix of EOS).
 */
interface Automaton {
  next: Int32Array;
  emit: Int16Array;
  failed: Uint8Array;
  acceptable: Uint8Array;
}

function buildAutomaton(): Automaton {
  const codes = canonicalCodes();
  // Tree: children[2n], children[2n+1]; symbol[n] >= 0 at leaves.
  const children: number[] = [0, 0];
  const symbol: number[] = [-1];
  const depth: number[] = [0];
  const onesPath: boolean[] = [true];
  for (let sym = 0; sym < CODE_LENGTHS.length; sym++) {
    const len = CODE_LENGTHS[sym]!;
    let node = 0;
    for (let i = len - 1; i >= 0; i--) {
      const bit = Math.floor(codes[sym]! / 2 ** i) % 2;
      let child = children[2 * node + bit]!;
      if (child === 0) {
        child = symbol.length;
        symbol.push(-1);
        depth.push(depth[node]! + 1);
        onesPath.push(onesPath[node]! && bit === 1);
        children.push(0, 0);
        children[2 * node + bit] = child;
      }
      node = child;
    }
    symbol[node] = sym;
  }
  const internal = symbol.map((s, n) => (s < 0 ? n : -1)).filter((n) => n >= 0);
  const index = new Map(internal.map((n, i) => [n, i]));
  const next = new Int32Array(internal.length * 16);
  const emit = new Int16Array(internal.length * 16).fill(-1);
  const failed = new Uint8Array(internal.length * 16);
  const acceptable = new Uint8Array(internal.length);
  for (const [node, state] of index) {
    // Padding is the start of EOS: only ones, fewer than eight bits, from the root.
    acceptable[state] = onesPath[node]! && depth[node]! < 8 ? 1 : 0;
    for (let nibble = 0; nibble < 16; nibble++) {
      let at = node;
      let out = -1;
      let bad = false;
      for (let b = 3; b >= 0; b--) {
        at = children[2 * at + ((nibble >> b) & 1)]!;
        if (at === 0) { bad = true; break; }
        if (symbol[at]! >= 0) {
          // A nibble emits at most one symbol: every code is at least five bits long.
          if (symbol[at] === EOS) { bad = true; break; }
          out = symbol[at]!;
          at = 0;
        }
      }
      const slot = state * 16 + nibble;
      failed[slot] = bad ? 1 : 0;
      emit[slot] = out;
      next[slot] = bad ? 0 : index.get(at)!;
    }
  }
  return { next, emit, failed, acceptable };
}

let automaton: Automaton | undefined;

/** Decodes a Huffman-coded string literal; throws on an invalid code or padding. */
export function huffmanDecode(input: Uint8Array): Buffer {
  const a = (automaton ??= buildAutomaton());
  // Codes are at least five bits: the output is at most 8/5 of the input.
  const out = Buffer.allocUnsafe(Math.ceil((input.length * 8) / 5));
  let n = 0;
  let state = 0;
  for (let i = 0; i < input.length * 2; i++) {
    const byte = input[i >> 1]!;
    const slot = state * 16 + ((i & 1) === 0 ? byte >> 4 : byte & 15);
    if (a.failed[slot]) throw new Error('invalid Huffman code in header field');
    const sym = a.emit[slot]!;
    if (sym >= 0) out[n++] = sym;
    state = a.next[slot]!;
  }
  if (!a.acceptable[state]) throw new Error('invalid Huffman padding in header field');
  return out.subarray(0, n);
}
