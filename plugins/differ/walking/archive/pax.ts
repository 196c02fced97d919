/**
 * PAX extended-header records as byte strings.
 *
 * node-tar parses and writes the standard PAX keys (path, linkpath, size, uid, ...), but it
 * drops every other key and decodes record bodies as UTF-8 text. Extended attributes travel as
 * `SCHILY.xattr.<name>=<raw bytes>` records whose values are frequently binary
 * (security.capability, POSIX ACLs), so berth reads and writes those records itself while
 * leaving the rest of the tar format to node-tar.
 *
 * A record is `<decimal length> <key>=<value>\n`, the length counting the whole record
 * including its own digits.
 */

export const XATTR_PREFIX = 'SCHILY.xattr.';

/** One `key=value` record of a PAX header body. */
export interface PaxRecord {
  key: string;
  value: Buffer;
}

/**
 * Splits a PAX header body into records. Returns undefined when the body is malformed (a
 * length that does not parse, overruns the body or does not end in a newline).
 */
export function parsePaxRecords(body: Buffer): PaxRecord[] | undefined {
  const out: PaxRecord[] = [];
  let pos = 0;
  while (pos < body.length) {
    // Trailing NUL padding is tolerated (some writers pad the body).
    if (body[pos] === 0) break;
    const space = body.indexOf(0x20, pos);
    if (space < 0 || space === pos || space - pos > 20) return undefined;
    let len = 0;
    for (let i = pos; i < space; i++) {
      const c = body[i]!;
      if (c < 0x30 || c > 0x39) return undefined;
      len = len * 10 + (c - 0x30);
    }
    const end = pos + len;
    if (len <= space - pos + 1 || end > body.length || body[end - 1] !== 0x0a) return undefined;
    const eq = body.indexOf(0x3d, space + 1);
    if (eq < 0 || eq >= end - 1) return undefined;
    out.push({ key: body.toString('utf8', space + 1, eq), value: body.subarray(eq + 1, end - 1) });
    pos = end;
  }
  return out;
}

/** Encodes one record: the length prefix counts its own digits, hence the fix-up loop. */
export function encodePaxRecord(key: string, value: Buffer | string): Buffer {
  const v = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  const k = Buffer.from(key, 'utf8');
  const rest = k.length + v.length + 3; // ' ', '=', '\n'
  let digits = String(rest).length;
  while (String(rest + digits).length !== digits) digits++;
  const total = rest + digits;
  const buf = Buffer.allocUnsafe(total);
  let off = buf.write(`${total} `, 0, 'latin1');
  off += k.copy(buf, off);
  buf[off++] = 0x3d;
  off += v.copy(buf, off);
  buf[off] = 0x0a;
  return buf;
}

/** The xattrs carried by a set of records, in record order (later duplicates win). */
export function xattrsOfRecords(records: PaxRecord[], into = new Map<string, Buffer>()): Map<string, Buffer> {
  for (const r of records) {
    if (r.key.startsWith(XATTR_PREFIX) && r.key.length > XATTR_PREFIX.length) {
      into.set(r.key.slice(XATTR_PREFIX.length), Buffer.from(r.value));
    }
  }
  return into;
}
