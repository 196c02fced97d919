/**
 * Computes the changes between two directory trees and writes them as an OCI layer tar, with
 * the behaviour of containerd's archive.WriteDiff over continuity's double-walk fs.Changes:
 *
 *  - Both trees are walked together in containerd's order (siblings sorted by the bytes of
 *    their names, each directory followed by its contents).
 *  - A path only in the lower tree becomes a `.wh.<name>` whiteout (nothing below it is
 *    visited); a path only in the upper tree is added with everything below it.
 *  - A path in both is unchanged when mode (type and permission bits), owner, device number
 *    and security.capability are equal and, for non-directories, size and mtime agree; when
 *    mtimes carry no sub-second part the symlink target or file content decides.
 *  - Every entry written is preceded by its parent directories (taken from the upper tree)
 *    unless they were already written.
 *  - Files with several links are written once; other names of the same inode become
 *    hardlink entries pointing at the first name written.
 *  - Headers: PAX format when needed, mtime truncated to seconds, no atime/ctime, no user or
 *    group names, directories end in "/", sockets are skipped.
 *
 * With `overlayUpper` the upper tree is an overlayfs upperdir: a 0/0 character device is a
 * whiteout, a directory with trusted.overlay.opaque=y is written followed by a
 * `.wh..wh..opq` marker (its lower contents are hidden), and deletions only come from such
 * markers. `lowerRoot` is then optional: when given (the lower layers' merged view) paths in
 * the upperdir that are identical to the lower ones (e.g. copied up without change) are
 * skipped. Upperdirs of mounts using metacopy or redirect_dir are not supported.
 */
import * as fsp from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import type { Writable } from 'node:stream';
import * as fsx from '../../../../core/sys/fsx.js';
import { TarWriter, type TarEntryHeader } from './tarwriter.js';

export interface WriteDiffOptions {
  /** `upperRoot` is an overlayfs upperdir (whiteout devices, opaque xattrs). */
  overlayUpper?: boolean;
  /**
   * Which xattrs go into the layer: 'capability' (default, as containerd: only
   * security.capability) or 'all' (everything but trusted.* and security.selinux).
   */
  xattrs?: 'capability' | 'all';
  /** mtime of whiteout entries (default: the epoch, for reproducible layers). */
  whiteoutTime?: Date;
  /** End `out` after the archive (default true). */
  end?: boolean;
  signal?: AbortSignal;
}

export interface WriteDiffResult {
  /** Entries written (whiteouts and hardlinks included). */
  entries: number;
  /** Bytes of tar written. */
  bytes: number;
}

const WHITEOUT_PREFIX = '.wh.';
const WHITEOUT_OPAQUE = '.wh..wh..opq';
const OVERLAY_OPAQUE_XATTR = 'trusted.overlay.opaque';
const CAPABILITY_XATTR = 'security.capability';

/** Files up to this size are read ahead of the writer; bigger ones are streamed when their turn comes. */
const PREFETCH_MAX_FILE = 1024 * 1024;
const PREFETCH_MAX_BYTES = 32 * 1024 * 1024;
const QUEUE_MAX = 256;
const STAT_BATCH = 64;
const READ_CHUNK = 1024 * 1024;

/** Writes the layer tar of the changes from `lowerRoot` (null: empty) to `upperRoot` into `out`. */
export async function writeDiff(lowerRoot: string | null, upperRoot: string, out: Writable, opts: WriteDiffOptions = {}): Promise<WriteDiffResult> {
  const differ = new Differ(lowerRoot, upperRoot, out, opts);
  try {
    await differ.run();
  } catch (err) {
    if (opts.end ?? true) out.destroy(err as Error);
    throw err;
  }
  if (opts.end ?? true) {
    await new Promise<void>((resolve, reject) => {
      out.once('error', reject);
      out.end(() => {
        out.off('error', reject);
        resolve();
      });
    });
  }
  return { entries: differ.entries, bytes: differ.tar.bytes };
}

/** Byte-wise comparison of names (what Go's sorted directory walk uses). */
export function compareNames(a: string, b: string): number {
  if (a === b) return 0;
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(a) && /^[\x00-\x7f]*$/.test(b)) return a < b ? -1 : 1;
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

interface Job {
  header: TarEntryHeader;
  xattrs?: Map<string, Buffer>;
  /** Content of a regular file: already being read, or read by the writer from `source`. */
  content?: Promise<Buffer>;
  source?: string;
}

interface Node {
  name: string;
  rel: string;
  abs: string;
  st: BigIntStats;
}

function joinRel(dir: string, name: string): string {
  return dir ? `${dir}/${name}` : name;
}

function isWhiteoutDevice(st: BigIntStats): boolean {
  return st.isCharacterDevice() && st.rdev === 0n;
}

class Differ {
  readonly lower: string | null;
  readonly upper: string;
  readonly overlay: boolean;
  readonly xattrMode: 'capability' | 'all';
  readonly whiteoutTime: Date;
  readonly signal?: AbortSignal;
  readonly tar: TarWriter;

  entries = 0;
  readonly emittedDirs = new Set<string>();
  /** Stats of directories on the current walk path, for writing parents on demand. */
  readonly dirStats = new Map<string, BigIntStats>();
  /** Hardlinks: inode -> first name written; inode -> unchanged names waiting for it. */
  readonly inodeSource = new Map<string, string>();
  readonly inodeRefs = new Map<string, string[]>();

  readonly queue: Job[] = [];
  prefetched = 0;
  producerDone = false;
  failure: unknown;
  wakeWriter: (() => void) | undefined;
  wakeProducer: (() => void) | undefined;

  constructor(lower: string | null, upper: string, out: Writable, opts: WriteDiffOptions) {
    this.lower = lower;
    this.upper = upper;
    this.overlay = opts.overlayUpper ?? false;
    this.xattrMode = opts.xattrs ?? 'capability';
    this.whiteoutTime = opts.whiteoutTime ?? new Date(0);
    this.signal = opts.signal;
    this.tar = new TarWriter(out);
  }

  async run(): Promise<void> {
    const rootSt = await fsp.lstat(this.upper, { bigint: true });
    if (!rootSt.isDirectory()) throw new Error(`diff upper ${this.upper} is not a directory`);
    let lowerIsDir = false;
    if (this.lower !== null) {
      lowerIsDir = (await fsp.lstat(this.lower, { bigint: true })).isDirectory();
      if (!lowerIsDir) throw new Error(`diff lower ${this.lower} is not a directory`);
    }
    const writer = this.writeLoop();
    try {
      await this.walk('', lowerIsDir);
    } catch (err) {
      this.fail(err);
    }
    this.producerDone = true;
    this.wake();
    await writer;
    if (this.failure !== undefined) {
      // Let prefetched reads settle before reporting.
      await Promise.allSettled(this.queue.map((j) => j.content));
      throw this.failure;
    }
    await this.tar.finish();
  }

  fail(err: unknown): void {
    this.failure ??= err;
    this.wake();
    const p = this.wakeProducer;
    this.wakeProducer = undefined;
    p?.();
  }

  wake(): void {
    const w = this.wakeWriter;
    this.wakeWriter = undefined;
    w?.();
  }

  checkAbort(): void {
    if (this.signal?.aborted) {
      const r = this.signal.reason;
      throw r instanceof Error ? r : Object.assign(new Error('diff aborted'), { name: 'AbortError' });
    }
    if (this.failure !== undefined) throw this.failure;
  }

  // ---------------------------------------------------------------------------------------
  // Output side: a bounded queue consumed in order by one writer.

  async enqueue(job: Job): Promise<void> {
    while ((this.queue.length >= QUEUE_MAX || this.prefetched >= PREFETCH_MAX_BYTES) && this.failure === undefined) {
      await new Promise<void>((resolve) => (this.wakeProducer = resolve));
    }
    this.checkAbort();
    const size = job.header.size;
    if (job.header.type === 'File' && size > 0) {
      if (size <= PREFETCH_MAX_FILE) {
        job.content = readExactly(job.source!, size);
        job.content.catch(() => {});
        this.prefetched += size;
      }
    }
    this.entries++;
    this.queue.push(job);
    this.wake();
  }

  async writeLoop(): Promise<void> {
    try {
      for (;;) {
        const job = this.queue.shift();
        if (!job) {
          if (this.producerDone || this.failure !== undefined) return;
          await new Promise<void>((resolve) => (this.wakeWriter = resolve));
          continue;
        }
        await this.writeJob(job);
        if (this.wakeProducer && this.queue.length < QUEUE_MAX / 2 && this.prefetched < PREFETCH_MAX_BYTES / 2) {
          const p = this.wakeProducer;
          this.wakeProducer = undefined;
          p();
        }
        if (this.failure !== undefined) return;
      }
    } catch (err) {
      this.fail(err);
    }
  }

  async writeJob(job: Job): Promise<void> {
    const h = job.header;
    await this.tar.header(h, job.xattrs);
    if (h.type !== 'File' || h.size === 0) return;
    if (job.content) {
      const data = await job.content;
      this.prefetched -= h.size;
      await this.tar.data(data);
    } else {
      await streamExactly(job.source!, h.size, (chunk) => this.tar.data(chunk));
    }
    await this.tar.pad(h.size);
  }

  // ---------------------------------------------------------------------------------------
  // Walk

  async readNames(dir: string): Promise<string[]> {
    const names = await fsp.readdir(dir);
    return names.sort(compareNames);
  }

  async statAll(root: string, dirRel: string, names: string[]): Promise<(BigIntStats | undefined)[]> {
    const out: (BigIntStats | undefined)[] = new Array(names.length);
    for (let i = 0; i < names.length; i += STAT_BATCH) {
      await Promise.all(
        names.slice(i, i + STAT_BATCH).map(async (n, j) => {
          try {
            out[i + j] = await fsp.lstat(`${root}/${joinRel(dirRel, n)}`, { bigint: true });
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
            out[i + j] = undefined;
          }
        }),
      );
    }
    return out;
  }

  /**
   * Walks directory `rel` (present in upper). `lowerDir`: the lower tree has a directory at
   * `rel` to compare against.
   */
  async walk(rel: string, lowerDir: boolean): Promise<void> {
    this.checkAbort();
    const upperDir = rel ? `${this.upper}/${rel}` : this.upper;
    const upperNames = await this.readNames(upperDir);
    const upperStats = await this.statAll(this.upper, rel, upperNames);

    let lowerNames: string[] = [];
    let lowerStats: (BigIntStats | undefined)[] = [];
    if (this.lower !== null && lowerDir) {
      if (this.overlay) {
        // Only the counterparts of what the upperdir holds matter.
        lowerNames = upperNames;
        lowerStats = await this.statAll(this.lower, rel, upperNames);
      } else {
        lowerNames = await this.readNames(rel ? `${this.lower}/${rel}` : this.lower);
        lowerStats = await this.statAll(this.lower, rel, lowerNames);
      }
    }

    let i = 0;
    let j = 0;
    while (i < upperNames.length || j < lowerNames.length) {
      this.checkAbort();
      const un = i < upperNames.length ? upperNames[i]! : undefined;
      const ln = j < lowerNames.length ? lowerNames[j]! : undefined;
      const cmp = un === undefined ? 1 : ln === undefined ? -1 : compareNames(un, ln);
      const ust = cmp <= 0 ? upperStats[i] : undefined;
      const lst = cmp >= 0 ? lowerStats[j] : undefined;
      const name = cmp <= 0 ? un! : ln!;
      if (cmp <= 0) i++;
      if (cmp >= 0) j++;
      const childRel = joinRel(rel, name);

      if (!ust) {
        // Only in lower (or vanished from upper while walking): deleted.
        if (lst && !this.overlay) await this.whiteout(rel, name);
        continue;
      }
      const upperNode: Node = { name, rel: childRel, abs: `${this.upper}/${childRel}`, st: ust };
      if (this.overlay) {
        if (isWhiteoutDevice(ust)) {
          await this.whiteout(rel, name);
          continue;
        }
        if (ust.isDirectory() && this.isOpaque(upperNode.abs)) {
          await this.emit(upperNode);
          await this.opaque(childRel);
          await this.descend(upperNode, false);
          continue;
        }
      }
      const lowerNode: Node | undefined = lst && this.lower !== null ? { name, rel: childRel, abs: `${this.lower}/${childRel}`, st: lst } : undefined;
      if (!lowerNode) {
        await this.emit(upperNode);
        if (ust.isDirectory()) await this.descend(upperNode, false);
        continue;
      }
      const same = await this.sameFile(lowerNode, upperNode);
      if (ust.isDirectory()) {
        if (!same) await this.emit(upperNode);
        await this.descend(upperNode, lst!.isDirectory());
        continue;
      }
      if (same) await this.unchanged(upperNode);
      else await this.emit(upperNode);
    }
  }

  async descend(node: Node, lowerDir: boolean): Promise<void> {
    this.dirStats.set(node.rel, node.st);
    try {
      await this.walk(node.rel, lowerDir);
    } finally {
      this.dirStats.delete(node.rel);
    }
  }

  isOpaque(abs: string): boolean {
    try {
      const v = fsx.lgetxattr(abs, OVERLAY_OPAQUE_XATTR);
      return v !== undefined && v.toString() === 'y';
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTSUP' || code === 'EOPNOTSUPP') return false;
      throw err;
    }
  }

  /** containerd's sameFile: cheap stat checks first, content only when they cannot tell. */
  async sameFile(l: Node, u: Node): Promise<boolean> {
    const a = l.st;
    const b = u.st;
    if (a.dev === b.dev && a.ino === b.ino) return true;
    if (a.mode !== b.mode || a.uid !== b.uid || a.gid !== b.gid || a.rdev !== b.rdev) return false;
    if (!bufEqual(this.getXattr(l.abs, CAPABILITY_XATTR), this.getXattr(u.abs, CAPABILITY_XATTR))) return false;
    if (a.isDirectory()) return true;
    if (a.size !== b.size) return false;
    const NS = 1_000_000_000n;
    if (a.mtimeNs / NS !== b.mtimeNs / NS) return false;
    const an = a.mtimeNs % NS;
    const bn = b.mtimeNs % NS;
    if (an === 0n && bn === 0n) {
      if (a.isSymbolicLink()) return (await fsp.readlink(l.abs)) === (await fsp.readlink(u.abs));
      if (a.size === 0n) return true;
      if (!a.isFile()) return true;
      return sameContent(l.abs, u.abs);
    }
    return an === bn;
  }

  getXattr(abs: string, name: string): Buffer | undefined {
    try {
      return fsx.lgetxattr(abs, name);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTSUP' || code === 'EOPNOTSUPP') return undefined;
      throw err;
    }
  }

  xattrsOf(abs: string): Map<string, Buffer> | undefined {
    if (this.xattrMode === 'capability') {
      const cap = this.getXattr(abs, CAPABILITY_XATTR);
      return cap && cap.length ? new Map([[CAPABILITY_XATTR, cap]]) : undefined;
    }
    let names: string[];
    try {
      names = fsx.llistxattr(abs);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTSUP' || code === 'EOPNOTSUPP') return undefined;
      throw err;
    }
    const out = new Map<string, Buffer>();
    for (const n of names) {
      if (n.startsWith('trusted.') || n === 'security.selinux') continue;
      const v = this.getXattr(abs, n);
      if (v !== undefined) out.set(n, v);
    }
    return out.size ? out : undefined;
  }

  // ---------------------------------------------------------------------------------------
  // Entries

  async ensureParents(rel: string): Promise<void> {
    let end = rel.lastIndexOf('/');
    if (end < 0) return;
    const missing: string[] = [];
    for (let p = rel.slice(0, end); ; p = p.slice(0, end)) {
      if (this.emittedDirs.has(p)) break;
      missing.push(p);
      end = p.lastIndexOf('/');
      if (end < 0) break;
    }
    for (let k = missing.length - 1; k >= 0; k--) {
      const p = missing[k]!;
      const st = this.dirStats.get(p) ?? (await fsp.stat(`${this.upper}/${p}`, { bigint: true }));
      await this.emit({ name: p.slice(p.lastIndexOf('/') + 1), rel: p, abs: `${this.upper}/${p}`, st });
    }
  }

  async whiteout(dirRel: string, name: string): Promise<void> {
    const rel = joinRel(dirRel, WHITEOUT_PREFIX + name);
    await this.ensureParents(rel);
    await this.enqueue({ header: { path: rel, type: 'File', mode: 0, uid: 0, gid: 0, size: 0, mtime: this.whiteoutTime } });
  }

  async opaque(dirRel: string): Promise<void> {
    const rel = joinRel(dirRel, WHITEOUT_OPAQUE);
    await this.enqueue({ header: { path: rel, type: 'File', mode: 0, uid: 0, gid: 0, size: 0, mtime: this.whiteoutTime } });
  }

  /** An unchanged path: only matters when it shares its inode with a changed one. */
  async unchanged(node: Node): Promise<void> {
    const st = node.st;
    if (st.isDirectory() || st.nlink <= 1n) return;
    const key = `${st.dev}:${st.ino}`;
    if (this.inodeSource.has(key)) {
      await this.emit(node);
      return;
    }
    const refs = this.inodeRefs.get(key);
    if (refs) refs.push(node.rel);
    else this.inodeRefs.set(key, [node.rel]);
  }

  /** Writes the entry for an added or modified path (after its parents). */
  async emit(node: Node): Promise<void> {
    const st = node.st;
    if (st.isSocket()) return;
    await this.ensureParents(node.rel);
    const header: TarEntryHeader = {
      path: node.rel,
      type: 'File',
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: 0,
      mtime: new Date(Number(st.mtimeNs / 1_000_000_000n) * 1000),
    };
    let extraLinks: string[] | undefined;
    if (st.isDirectory()) {
      header.type = 'Directory';
      header.path = node.rel + '/';
      this.emittedDirs.add(node.rel);
    } else if (st.isSymbolicLink()) {
      header.type = 'SymbolicLink';
      header.linkpath = await fsp.readlink(node.abs);
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      header.type = st.isCharacterDevice() ? 'CharacterDevice' : 'BlockDevice';
      header.devmaj = fsx.major(st.rdev);
      header.devmin = fsx.minor(st.rdev);
    } else if (st.isFIFO()) {
      header.type = 'FIFO';
    } else {
      header.size = Number(st.size);
    }

    if (!st.isDirectory() && st.nlink > 1n) {
      const key = `${st.dev}:${st.ino}`;
      const source = this.inodeSource.get(key);
      if (source !== undefined) {
        header.type = 'Link';
        header.linkpath = source;
        header.size = 0;
      } else {
        this.inodeSource.set(key, node.rel);
        extraLinks = this.inodeRefs.get(key);
        this.inodeRefs.delete(key);
      }
    }

    await this.enqueue({ header, xattrs: this.xattrsOf(node.abs), source: node.abs });

    if (extraLinks) {
      for (const extra of extraLinks) {
        await this.ensureParents(extra);
        await this.enqueue({ header: { ...header, path: extra, type: 'Link', linkpath: node.rel, size: 0 } });
      }
    }
  }
}

function bufEqual(a: Buffer | undefined, b: Buffer | undefined): boolean {
  if (!a || !a.length) return !b || !b.length;
  return !!b && a.equals(b);
}

async function readExactly(file: string, size: number): Promise<Buffer> {
  const fh = await fsp.open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(size);
    let off = 0;
    while (off < size) {
      const { bytesRead } = await fh.read(buf, off, size - off, off);
      if (bytesRead === 0) throw new Error(`${file} shrank while the diff was written (expected ${size} bytes, got ${off})`);
      off += bytesRead;
    }
    return buf;
  } finally {
    await fh.close();
  }
}

async function streamExactly(file: string, size: number, sink: (chunk: Buffer) => Promise<void>): Promise<void> {
  const fh = await fsp.open(file, 'r');
  try {
    let off = 0;
    while (off < size) {
      const want = Math.min(READ_CHUNK, size - off);
      const buf = Buffer.allocUnsafe(want);
      const { bytesRead } = await fh.read(buf, 0, want, off);
      if (bytesRead === 0) throw new Error(`${file} shrank while the diff was written (expected ${size} bytes, got ${off})`);
      off += bytesRead;
      await sink(bytesRead === want ? buf : buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
}

async function sameContent(a: string, b: string): Promise<boolean> {
  const [fa, fb] = await Promise.all([fsp.open(a, 'r'), fsp.open(b, 'r')]);
  try {
    const CHUNK = 256 * 1024;
    const ba = Buffer.allocUnsafe(CHUNK);
    const bb = Buffer.allocUnsafe(CHUNK);
    let pos = 0;
    for (;;) {
      const [ra, rb] = await Promise.all([fa.read(ba, 0, CHUNK, pos), fb.read(bb, 0, CHUNK, pos)]);
      if (ra.bytesRead !== rb.bytesRead) return false;
      if (ra.bytesRead === 0) return true;
      if (!ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead))) return false;
      pos += ra.bytesRead;
    }
  } finally {
    await Promise.all([fa.close(), fb.close()]);
  }
}
