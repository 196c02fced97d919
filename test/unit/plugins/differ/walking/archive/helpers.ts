// Shared helpers for the layer engine tests: building tar archives in memory with node-tar's
// Header class (so crafted, even malicious, entries are possible), sandboxes, and tree snapshots.
import { Readable } from 'node:stream';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { Header, Parser, type ReadEntry } from 'tar';
import * as fsx from '../../../../../../core/sys/fsx.js';

export type EntryType = 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'BlockDevice' | 'FIFO';

export interface TarSpec {
  path: string;
  type?: EntryType;
  data?: string | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: Date;
  linkpath?: string;
  devmaj?: number;
  devmin?: number;
  /** Raw PAX records (SCHILY.xattr.* and anything else) written in a PAX header before the entry. */
  pax?: Record<string, string | Buffer>;
}

/** One PAX record "<len> key=value\n" (test-side encoder, independent of the code under test). */
function paxRecord(key: string, value: string | Buffer): Buffer {
  const v = typeof value === 'string' ? Buffer.from(value) : value;
  const body = Buffer.concat([Buffer.from(` ${key}=`), v, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

function padTo512(b: Buffer): Buffer {
  const rem = b.length % 512;
  return rem ? Buffer.concat([b, Buffer.alloc(512 - rem)]) : b;
}

export function headerBlock(spec: TarSpec, size: number): Buffer {
  const h = new Header({
    path: spec.path,
    type: spec.type ?? 'File',
    mode: spec.mode ?? (spec.type === 'Directory' ? 0o755 : 0o644),
    uid: spec.uid ?? 0,
    gid: spec.gid ?? 0,
    size,
    mtime: spec.mtime ?? new Date(1_600_000_000_000),
    linkpath: spec.linkpath ?? '',
    uname: '',
    gname: '',
    devmaj: spec.devmaj ?? 0,
    devmin: spec.devmin ?? 0,
  });
  h.encode();
  return h.block!;
}

/** Builds an uncompressed tar archive from the specs, in order. */
export function buildTar(specs: TarSpec[], opts: { eof?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const spec of specs) {
    const data = spec.data === undefined ? Buffer.alloc(0) : Buffer.from(spec.data);
    const pax: Record<string, string | Buffer> = { ...(spec.pax ?? {}) };
    if (Buffer.byteLength(spec.path) >= 100) pax.path = spec.path;
    if (spec.linkpath && Buffer.byteLength(spec.linkpath) >= 100) pax.linkpath = spec.linkpath;
    const keys = Object.keys(pax);
    if (keys.length) {
      const body = Buffer.concat(keys.map((k) => paxRecord(k, pax[k]!)));
      const ph = new Header({ path: 'PaxHeader/x', type: 'ExtendedHeader', size: body.length, mode: 0o644, mtime: new Date(0) });
      ph.encode();
      parts.push(ph.block!, padTo512(body));
    }
    parts.push(headerBlock(spec, data.length));
    if (data.length) parts.push(padTo512(data));
  }
  if (opts.eof ?? true) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** A readable that yields `buf` in chunks of `chunk` bytes (exercises split headers). */
export function streamOf(buf: Buffer, chunk = 64 * 1024): Readable {
  let off = 0;
  return new Readable({
    read() {
      if (off >= buf.length) {
        this.push(null);
        return;
      }
      const end = Math.min(buf.length, off + chunk);
      this.push(buf.subarray(off, end));
      off = end;
    },
  });
}

export interface Sandbox {
  dir: string;
  root: string;
  sentinel: string;
  cleanup(): Promise<void>;
}

/**
 * A temp dir holding `root/` (the apply target) and a sibling `sentinel/` with a file and a
 * subdirectory, plus a snapshot function to prove the sentinel was not touched.
 */
export async function makeSandbox(prefix = 'berth-archive-'): Promise<Sandbox> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  const root = path.join(dir, 'root');
  const sentinel = path.join(dir, 'sentinel');
  await fsp.mkdir(root);
  await fsp.mkdir(path.join(sentinel, 'etc'), { recursive: true });
  await fsp.writeFile(path.join(sentinel, 'secret'), 'do not touch\n');
  await fsp.writeFile(path.join(sentinel, 'etc', 'passwd'), 'root:x:0:0\n');
  return {
    dir,
    root,
    sentinel,
    cleanup: () => fsp.rm(dir, { recursive: true, force: true }),
  };
}

export interface NodeInfo {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  sha?: string;
  link?: string;
  rdev?: number;
  mtimeSec: number;
  nlink?: number;
  xattrs: Record<string, string>;
}

function typeOf(st: fs.Stats): string {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  return 'unknown';
}

/**
 * Every path below `root` with its type, mode, owner, content hash, link target, device,
 * mtime (seconds) and xattrs (trusted.* included when `trusted`). Directory sizes and link
 * counts are left out unless asked for.
 */
export async function snapshotTree(
  root: string,
  opts: { trusted?: boolean; dirMtimes?: boolean; nlink?: boolean } = {},
): Promise<Record<string, NodeInfo>> {
  const out: Record<string, NodeInfo> = {};
  async function walk(rel: string) {
    const names = (await fsp.readdir(path.join(root, rel))).sort();
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      const abs = path.join(root, r);
      const st = await fsp.lstat(abs);
      const info: NodeInfo = {
        type: typeOf(st),
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
        mtimeSec: Math.floor(st.mtimeMs / 1000),
        xattrs: {},
      };
      if (st.isDirectory() && !opts.dirMtimes) info.mtimeSec = 0;
      if (st.isFile()) {
        info.size = st.size;
        info.sha = createHash('sha256').update(await fsp.readFile(abs)).digest('hex');
        if (opts.nlink) info.nlink = st.nlink;
      }
      if (st.isSymbolicLink()) info.link = await fsp.readlink(abs);
      if (st.isCharacterDevice() || st.isBlockDevice()) info.rdev = st.rdev;
      for (const x of fsx.llistxattr(abs).sort()) {
        if (x.startsWith('trusted.') && !opts.trusted) continue;
        if (x === 'security.selinux') continue;
        info.xattrs[x] = fsx.lgetxattr(abs, x)?.toString('base64') ?? '';
      }
      out[r] = info;
      if (st.isDirectory()) await walk(r);
    }
  }
  await walk('');
  return out;
}

export interface ListedEntry {
  path: string;
  type: string;
  mode?: number;
  uid?: number;
  gid?: number;
  size: number;
  linkpath?: string;
  devmaj: number;
  devmin: number;
  mtime?: Date;
  data: Buffer;
  pax: Record<string, Buffer>;
}

/**
 * Lists an uncompressed tar with node-tar's Parser. PAX records are recovered from the raw
 * header block bodies seen in the byte stream (the parser does not expose unknown keys).
 */
export async function listTar(buf: Buffer): Promise<ListedEntry[]> {
  const out: ListedEntry[] = [];
  // Raw PAX bodies, in order, found by walking the blocks with node-tar's Header.
  const paxBodies: Record<string, Buffer>[] = [];
  let off = 0;
  let pending: Record<string, Buffer> = {};
  while (off + 512 <= buf.length) {
    const h = new Header(buf, off);
    if (h.nullBlock) break;
    const size = h.size ?? 0;
    const body = buf.subarray(off + 512, off + 512 + size);
    if (h.type === 'ExtendedHeader') {
      let p = 0;
      while (p < body.length) {
        const sp = body.indexOf(0x20, p);
        const len = Number(body.toString('latin1', p, sp));
        const rec = body.subarray(sp + 1, p + len - 1);
        const eq = rec.indexOf(0x3d);
        pending[rec.toString('utf8', 0, eq)] = Buffer.from(rec.subarray(eq + 1));
        p += len;
      }
    } else if (h.type !== 'GlobalExtendedHeader') {
      paxBodies.push(pending);
      pending = {};
    }
    off += 512 + Math.ceil(size / 512) * 512;
  }
  const parser = new Parser();
  await new Promise<void>((resolve, reject) => {
    parser.on('entry', (e: ReadEntry) => {
      const chunks: Buffer[] = [];
      e.on('data', (c: Buffer) => chunks.push(c));
      e.on('end', () => {
        out.push({
          path: e.path,
          type: e.type,
          mode: e.mode,
          uid: e.uid,
          gid: e.gid,
          size: e.size,
          linkpath: e.linkpath,
          devmaj: e.header.devmaj,
          devmin: e.header.devmin,
          mtime: e.mtime,
          data: Buffer.concat(chunks),
          pax: paxBodies[out.length] ?? {},
        });
      });
    });
    parser.on('end', () => resolve());
    parser.on('error', reject);
    parser.end(buf);
  });
  return out;
}

export async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

export const isRoot = process.getuid?.() === 0;
