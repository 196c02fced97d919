/**
 * Writes a tar stream header by header: node-tar's Header class encodes each ustar block;
 * when a field does not fit (long names, huge ids or sizes) or the entry carries xattrs, a PAX
 * extended header goes in front of it. Standard PAX keys are formatted by node-tar's Pax,
 * `SCHILY.xattr.*` records (binary values) by pax.ts.
 *
 * Output is coalesced into large writes and respects the destination's backpressure.
 */
import type { Writable } from 'node:stream';
import { posix as path } from 'node:path';
import { Header, Pax, type HeaderData } from 'tar';
import { encodePaxRecord, XATTR_PREFIX } from './pax.js';

export type TarEntryType = 'File' | 'Link' | 'SymbolicLink' | 'CharacterDevice' | 'BlockDevice' | 'Directory' | 'FIFO';

export interface TarEntryHeader {
  path: string;
  type: TarEntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: Date;
  linkpath?: string;
  devmaj?: number;
  devmin?: number;
}

const BLOCK = 512;
const ZERO = Buffer.alloc(BLOCK * 2);
const FLUSH_BYTES = 256 * 1024;

// Largest values the octal ustar fields hold (7 and 11 digits).
const MAX_ID = 0o7777777;
const MAX_SIZE = 0o77777777777;

export class TarWriter {
  readonly #out: Writable;
  #buffered: Buffer[] = [];
  #bufferedLen = 0;
  #error: Error | undefined;
  #written = 0;

  constructor(out: Writable) {
    this.#out = out;
    out.on('error', (err) => {
      this.#error ??= err;
    });
  }

  /** Bytes of tar produced so far. */
  get bytes(): number {
    return this.#written + this.#bufferedLen;
  }

  /** Queues the header (and PAX header when needed) of one entry. */
  async header(h: TarEntryHeader, xattrs?: Map<string, Buffer>): Promise<void> {
    const fields: HeaderData = {
      path: h.path,
      mode: h.mode,
      uid: h.uid,
      gid: h.gid,
      size: h.size,
      mtime: h.mtime,
      type: h.type,
      linkpath: h.linkpath ?? '',
      uname: '',
      gname: '',
      devmaj: h.devmaj ?? 0,
      devmin: h.devmin ?? 0,
    };
    const header = new Header(fields);
    const needPax = header.encode();
    const records: Buffer[] = [];
    if (needPax) {
      const std: HeaderData = {};
      if (Buffer.byteLength(h.path) >= 100) std.path = h.path;
      if (h.linkpath && Buffer.byteLength(h.linkpath) >= 100) std.linkpath = h.linkpath;
      if (h.uid > MAX_ID) std.uid = h.uid;
      if (h.gid > MAX_ID) std.gid = h.gid;
      if (h.size > MAX_SIZE) std.size = h.size;
      const body = new Pax(std).encodeBody();
      if (body) records.push(Buffer.from(body, 'utf8'));
    }
    if (xattrs) {
      for (const [k, v] of [...xattrs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
        records.push(encodePaxRecord(XATTR_PREFIX + k, v));
      }
    }
    if (records.length) {
      const body = Buffer.concat(records);
      const pax = new Header({
        path: `PaxHeaders/${path.basename(h.path)}`.slice(0, 99),
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: body.length,
        mtime: h.mtime,
        type: 'ExtendedHeader',
        linkpath: '',
        uname: '',
        gname: '',
        devmaj: 0,
        devmin: 0,
      });
      pax.encode();
      await this.push(pax.block!);
      await this.push(body);
      await this.pad(body.length);
    }
    await this.push(header.block!);
  }

  /** Queues entry content; `pad` must follow once the entry's `size` bytes are written. */
  async data(chunk: Buffer): Promise<void> {
    await this.push(chunk);
  }

  /** Zero padding after `size` bytes of content, up to the next block boundary. */
  async pad(size: number): Promise<void> {
    const rem = size % BLOCK;
    if (rem) await this.push(ZERO.subarray(0, BLOCK - rem));
  }

  /** The end-of-archive marker (two zero blocks), then flushes. */
  async finish(): Promise<void> {
    await this.push(ZERO);
    await this.flush();
  }

  async push(buf: Buffer): Promise<void> {
    if (this.#error) throw this.#error;
    if (buf.length >= FLUSH_BYTES) {
      await this.flush();
      await this.write(buf);
      return;
    }
    this.#buffered.push(buf);
    this.#bufferedLen += buf.length;
    if (this.#bufferedLen >= FLUSH_BYTES) await this.flush();
  }

  async flush(): Promise<void> {
    if (!this.#bufferedLen) return;
    const buf = this.#buffered.length === 1 ? this.#buffered[0]! : Buffer.concat(this.#buffered, this.#bufferedLen);
    this.#buffered = [];
    this.#bufferedLen = 0;
    await this.write(buf);
  }

  async write(buf: Buffer): Promise<void> {
    if (this.#error) throw this.#error;
    this.#written += buf.length;
    if (this.#out.write(buf)) return;
    await new Promise<void>((resolve, reject) => {
      const cleanup = () => {
        this.#out.off('drain', onDrain);
        this.#out.off('error', onError);
        this.#out.off('close', onClose);
      };
      const onDrain = () => {
        cleanup();
        resolve();
      };
      const onError = (err: Error) => {
        cleanup();
        reject(err);
      };
      const onClose = () => {
        cleanup();
        reject(this.#error ?? new Error('tar output closed before the diff was written'));
      };
      this.#out.on('drain', onDrain);
      this.#out.on('error', onError);
      this.#out.on('close', onClose);
    });
  }
}
