/**
 * node-tar's streaming Parser, extended to keep the raw bytes of PAX extended headers so
 * `SCHILY.xattr.*` records reach the applier intact (node-tar itself discards unknown PAX keys
 * and reads header bodies as UTF-8 text, which mangles binary attribute values).
 *
 * The hook wraps the parser's header-consuming step: after node-tar has built the entry for a
 * header block, a PAX ('x') meta entry gets a second data listener that collects its body,
 * and the next real entry is tagged with the attributes collected since the previous one. It
 * relies on node-tar 7's symbol-keyed internals ('consumeHeader', 'writeEntry'); if those
 * are not found the plain Parser is used and `xattrSupport` is false.
 */
import { Parser, type ReadEntry } from 'tar';
import { parsePaxRecords, xattrsOfRecords } from './pax.js';

type ParserOptions = ConstructorParameters<typeof Parser>[0];

const XATTRS = Symbol('berth.xattrs');

/** A node-tar entry, possibly tagged with the PAX xattrs that preceded it. */
export type LayerEntry = ReadEntry & { [XATTRS]?: Map<string, Buffer> };

/** The extended attributes recorded for `entry` (empty map when none). */
export function entryXattrs(entry: ReadEntry): Map<string, Buffer> | undefined {
  return (entry as LayerEntry)[XATTRS];
}

function findSymbol(obj: object, description: string): symbol | undefined {
  return Object.getOwnPropertySymbols(obj).find((s) => s.description === description);
}

const CONSUME_HEADER = findSymbol(Parser.prototype, 'consumeHeader');
const WRITE_ENTRY = findSymbol(new Parser(), 'writeEntry');

/** Whether xattrs from PAX headers can be captured with the installed node-tar. */
export const xattrSupport = CONSUME_HEADER !== undefined && WRITE_ENTRY !== undefined;

type Hooked = Parser & {
  pendingXattrs?: Map<string, Buffer>;
  badPax?: string;
};

class XattrParser extends Parser {
  pendingXattrs?: Map<string, Buffer>;
  /** Set when a PAX body could not be split into records; the applier reports it. */
  badPax?: string;
}

if (xattrSupport) {
  const original = (Parser.prototype as unknown as Record<symbol, (chunk: Buffer, pos: number) => void>)[CONSUME_HEADER!]!;
  Object.defineProperty(XattrParser.prototype, CONSUME_HEADER!, {
    configurable: true,
    writable: true,
    value: function consumeHeader(this: Hooked & Record<symbol, unknown>, chunk: Buffer, position: number) {
      const before = this[WRITE_ENTRY!];
      original.call(this, chunk, position);
      const entry = this[WRITE_ENTRY!] as ReadEntry | undefined;
      if (!entry || entry === before) return;
      if (entry.meta) {
        if ((entry.type === 'ExtendedHeader' || entry.type === 'OldExtendedHeader') && !entry.ignore && entry.size > 0) {
          const parts: Buffer[] = [];
          entry.on('data', (c: Buffer) => parts.push(c));
          entry.on('end', () => {
            const body = Buffer.concat(parts);
            const records = parsePaxRecords(body);
            if (!records) {
              this.badPax ??= 'malformed PAX extended header';
              return;
            }
            this.pendingXattrs = xattrsOfRecords(records, this.pendingXattrs);
          });
        }
        return;
      }
      const xattrs = this.pendingXattrs;
      this.pendingXattrs = undefined;
      if (xattrs && xattrs.size) (entry as LayerEntry)[XATTRS] = xattrs;
    },
  });
}

/** A tar stream parser for layers: never decompresses by itself (callers do), keeps xattrs. */
export function createLayerParser(opts: ParserOptions = {}): Parser & { badPax?: string } {
  // zstd sniffing would hand data to minizlib, which needs a zlib with zstd (Node >= 22.15).
  const o = { ...opts, zstd: false, brotli: false } as ParserOptions;
  return xattrSupport ? new XattrParser(o) : new Parser(o);
}
