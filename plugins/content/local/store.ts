/**
 * The local content store: containerd's on-disk layout under the plugin root.
 *   blobs/<alg>/<hex>                      committed, read-only blobs
 *   ingest/<sha256 hex of ref>/ref         the ingest's ref
 *                              data        bytes received so far (its size is the offset)
 *                              startedat   RFC 3339 timestamps
 *                              updatedat
 *                              total       expected size (only when known)
 * The store is not namespaced and keeps no labels: the metadata store layers both on top and
 * passes refs of the form `<namespace>/<seq>/<client ref>`.
 */
import { createHash } from 'node:crypto';
import { createReadStream, constants as C } from 'node:fs';
import { lstat, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { ContentInfo, ContentStore, ContentWriter, IngestStatus, WriterOptions } from '../../../core/content/content.js';
import { contentInfoAdaptor, digestProblem, ingestStatusAdaptor } from '../../../core/content/content.js';
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  OutOfRangeError,
  isNotFound,
} from '../../../core/errdefs/errdefs.js';
import { openFd } from '../../../core/sys/fd.js';
import { parseFilters } from '../../../core/filters/filters.js';
import type { RequestContext } from '../../../core/namespaces/namespaces.js';
import { silentLogger, type Logger } from '../../../core/log/logger.js';
import { isLocked, lock, unlock } from './locks.js';
import { readTimestampFile, writeSmallFile, writeTimestampFile } from './files.js';
import { LocalWriter } from './writer.js';
import { RunningDigest } from './digest.js';

export interface LocalStoreOptions {
  log?: Logger;
  /**
   * An ingest nobody writes to and nothing has touched for this long is stale: the janitor
   * removes it unless `keepIngest` says it is still wanted. Default 24 h (containerd's expiry
   * of unleased ingests).
   */
  staleIngestAgeMs?: number;
}

const DAY_MS = 24 * 60 * 60 * 1000;
const READ_CHUNK = 1 << 20;

/**
 * Small blobs (indexes, manifests, configs) are read over and over: `ctr run` alone reads the
 * same three or four of them nine times. Blobs are immutable, so their bytes are kept in a
 * small LRU once read and served without touching the disk (a read from disk is a stat plus
 * an open, read and close on the thread pool). Deleting a blob evicts it.
 */
const CACHE_BLOB_MAX = 256 * 1024;
const CACHE_TOTAL_MAX = 4 * 1024 * 1024;

class SmallBlobCache {
  private readonly blobs = new Map<string, Buffer>();
  private bytes = 0;

  get(digest: string): Buffer | undefined {
    const b = this.blobs.get(digest);
    if (b) {
      // Most recently used last.
      this.blobs.delete(digest);
      this.blobs.set(digest, b);
    }
    return b;
  }

  set(digest: string, data: Buffer): void {
    if (data.length > CACHE_BLOB_MAX) return;
    this.delete(digest);
    this.blobs.set(digest, data);
    this.bytes += data.length;
    for (const [d, b] of this.blobs) {
      if (this.bytes <= CACHE_TOTAL_MAX) break;
      this.blobs.delete(d);
      this.bytes -= b.length;
    }
  }

  delete(digest: string): void {
    const b = this.blobs.get(digest);
    if (!b) return;
    this.blobs.delete(digest);
    this.bytes -= b.length;
  }
}

/** One Readable of `data` (a view, no copy). */
const readableOf = (data: Buffer): Readable => Readable.from(data.length ? [data] : [], { objectMode: false });

const isMissing = (err: unknown) => (err as NodeJS.ErrnoException)?.code === 'ENOENT';

export class LocalContentStore implements ContentStore {
  readonly log: Logger;
  readonly staleIngestAgeMs: number;
  /** Asked by the janitor before removing a stale ingest (the metadata store keeps leased ones). */
  keepIngest: ((ref: string, now: number) => boolean) | undefined;
  private readonly cache = new SmallBlobCache();
  /** Counts deletions: a read that overlapped one does not fill the cache. */
  private deletions = 0;

  private constructor(readonly root: string, opts: LocalStoreOptions) {
    this.log = opts.log ?? silentLogger;
    this.staleIngestAgeMs = opts.staleIngestAgeMs ?? DAY_MS;
  }

  static async open(root: string, opts: LocalStoreOptions = {}): Promise<LocalContentStore> {
    await mkdir(join(root, 'ingest'), { recursive: true, mode: 0o755 });
    return new LocalContentStore(root, opts);
  }

  blobPath(digest: string): string {
    const problem = digestProblem(digest);
    if (problem) throw new InvalidArgumentError(`cannot calculate blob path from invalid digest: ${problem}`);
    const i = digest.indexOf(':');
    return join(this.root, 'blobs', digest.slice(0, i), digest.slice(i + 1));
  }

  /** The ingest directory of a ref: a digest of the ref keeps path lengths constant. */
  ingestPath(ref: string): string {
    return join(this.root, 'ingest', createHash('sha256').update(ref).digest('hex'));
  }

  async info(_ctx: RequestContext, digest: string): Promise<ContentInfo> {
    const p = this.blobPath(digest);
    let st;
    try {
      // lstat: a blob is a regular file in blobs/; a link there (planted) is not content.
      st = await lstat(p);
    } catch (err) {
      if (isMissing(err)) throw new NotFoundError(`content ${digest}`, { cause: err });
      throw err;
    }
    if (!st.isFile()) throw new NotFoundError(`content ${digest}`);
    return { digest, size: st.size, createdAt: st.mtime, updatedAt: st.atime, labels: {} };
  }

  async update(): Promise<ContentInfo> {
    throw new FailedPreconditionError('update not supported on immutable content store');
  }

  async *list(_ctx: RequestContext, filters: readonly string[]): AsyncIterable<ContentInfo> {
    const filter = parseFilters(filters);
    const blobs = join(this.root, 'blobs');
    let algs: string[];
    try {
      algs = await readdir(blobs);
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    for (const alg of algs.sort()) {
      if (!['sha256', 'sha384', 'sha512'].includes(alg)) continue;
      let names: string[];
      try {
        names = await readdir(join(blobs, alg));
      } catch (err) {
        if (isMissing(err)) continue;
        throw err;
      }
      for (const hex of names.sort()) {
        const digest = `${alg}:${hex}`;
        if (digestProblem(digest)) {
          this.log.warn('invalid digest for blob path', { path: join(blobs, alg, hex) });
          continue;
        }
        let info: ContentInfo;
        try {
          const st = await lstat(join(blobs, alg, hex));
          if (!st.isFile()) continue;
          info = { digest, size: st.size, createdAt: st.mtime, updatedAt: st.atime, labels: {} };
        } catch (err) {
          if (isMissing(err)) continue;
          throw err;
        }
        if (filter.match(contentInfoAdaptor(info))) yield info;
      }
    }
  }

  async delete(_ctx: RequestContext, digest: string): Promise<void> {
    const p = this.blobPath(digest);
    try {
      await stat(p);
    } catch (err) {
      if (isMissing(err)) throw new NotFoundError(`content ${digest}`, { cause: err });
      throw err;
    }
    this.deletions++;
    this.cache.delete(digest);
    await rm(p, { force: true });
  }

  async read(ctx: RequestContext, digest: string, offset = 0, length = 0): Promise<Readable> {
    const r = await this.range(ctx, digest, offset, length);
    if (r.n === 0) return Readable.from([]);
    const small = await this.smallRange(digest, r);
    if (small) return readableOf(small);
    return createReadStream(this.blobPath(digest), { start: r.start, end: r.start + r.n - 1, highWaterMark: READ_CHUNK });
  }

  async readBytes(ctx: RequestContext, digest: string, offset = 0, length = 0): Promise<Buffer | undefined> {
    const r = await this.range(ctx, digest, offset, length);
    return r.n === 0 ? Buffer.alloc(0) : this.smallRange(digest, r);
  }

  /** Where a read of `length` bytes (≤0: to the end) from `offset` lies; OUT_OF_RANGE past the end. */
  private async range(ctx: RequestContext, digest: string, offset: number, length: number) {
    const cached = this.cache.get(digest);
    const size = cached ? cached.length : (await this.info(ctx, digest)).size;
    const start = Math.max(0, offset);
    if (start > size) throw new OutOfRangeError(`read past object length ${size} bytes`);
    const n = length <= 0 || start + length > size ? size - start : length;
    return { cached, size, start, n };
  }

  /** The range's bytes if the blob is small enough to be read whole (and cached). */
  private async smallRange(digest: string, r: { cached: Buffer | undefined; size: number; start: number; n: number }): Promise<Buffer | undefined> {
    const data = r.cached ?? (r.size <= CACHE_BLOB_MAX ? await this.readSmall(digest, r.size) : undefined);
    return data?.subarray(r.start, r.start + r.n);
  }

  /** A small blob's bytes, read whole and cached; undefined if it changed size meanwhile. */
  private async readSmall(digest: string, size: number): Promise<Buffer | undefined> {
    const deletions = this.deletions;
    let data: Buffer;
    try {
      data = await readFile(this.blobPath(digest));
    } catch (err) {
      if (isMissing(err)) throw new NotFoundError(`content ${digest}`, { cause: err });
      throw err;
    }
    if (data.length !== size) return undefined;
    if (this.deletions === deletions) this.cache.set(digest, data);
    return data;
  }

  async status(_ctx: RequestContext, ref: string): Promise<IngestStatus> {
    return this.statusAt(this.ingestPath(ref));
  }

  private async statusAt(path: string): Promise<IngestStatus> {
    let size: number;
    let mtime: Date;
    let ref: string;
    try {
      // lstat: data must be the ingest's own regular file, not a link leading elsewhere.
      const st = await lstat(join(path, 'data'));
      if (!st.isFile()) throw new NotFoundError(`ingest ${path}: data is not a regular file`);
      size = st.size;
      mtime = st.mtime;
      ref = await readFile(join(path, 'ref'), 'utf8');
    } catch (err) {
      if (isMissing(err)) throw new NotFoundError(`ingest ${path}`, { cause: err });
      throw err;
    }
    const startedAt = await readTimestampFile(join(path, 'startedat'));
    let updatedAt = await readTimestampFile(join(path, 'updatedat'));
    // updatedat is written on close only; the data file's mtime is fresher while writing.
    if (mtime > updatedAt) updatedAt = mtime;
    return { ref, offset: size, total: await this.totalAt(path), expected: '', startedAt, updatedAt };
  }

  private async totalAt(path: string): Promise<number> {
    try {
      const n = Number.parseInt(await readFile(join(path, 'total'), 'utf8'), 10);
      return Number.isFinite(n) ? n : 0;
    } catch {
      return 0;
    }
  }

  async listStatuses(_ctx: RequestContext, filters: readonly string[]): Promise<IngestStatus[]> {
    const filter = parseFilters(filters);
    const out: IngestStatus[] = [];
    for (const name of await readdir(join(this.root, 'ingest'))) {
      try {
        const st = await this.statusAt(join(this.root, 'ingest', name));
        if (filter.match(ingestStatusAdaptor(st))) out.push(st);
      } catch (err) {
        // Ingests finishing while we list simply disappear.
        if (!isNotFound(err)) throw err;
      }
    }
    return out;
  }

  /** The ref of every ingest on disk (containerd's WalkStatusRefs). */
  async ingestRefs(): Promise<string[]> {
    const out: string[] = [];
    for (const name of await readdir(join(this.root, 'ingest'))) {
      try {
        out.push(await readFile(join(this.root, 'ingest', name, 'ref'), 'utf8'));
      } catch (err) {
        if (!isMissing(err)) this.log.warn('failed to read ingest ref', { path: join(this.root, 'ingest', name), error: String(err) });
      }
    }
    return out;
  }

  async abort(_ctx: RequestContext, ref: string): Promise<void> {
    const path = this.ingestPath(ref);
    try {
      await stat(path);
    } catch (err) {
      if (isMissing(err)) throw new NotFoundError(`ingest ref ${JSON.stringify(ref)}`, { cause: err });
      throw err;
    }
    await rm(path, { recursive: true, force: true });
  }

  async writer(_ctx: RequestContext, opts: WriterOptions): Promise<ContentWriter> {
    const ref = opts.ref;
    if (!ref) throw new InvalidArgumentError('ref must not be empty');
    await lock(this.root, ref);
    try {
      return await this.openWriter(ref, opts.total ?? 0, opts.expected ?? '');
    } catch (err) {
      unlock(this.root, ref);
      throw err;
    }
  }

  /** Starts or resumes the ingest of `ref`; the caller holds the ref's lock. */
  private async openWriter(ref: string, total: number, expected: string): Promise<ContentWriter> {
    if (expected) {
      let present = false;
      try {
        present = (await lstat(this.blobPath(expected))).isFile();
      } catch (err) {
        if (!isMissing(err)) throw err;
      }
      if (present) throw new AlreadyExistsError(`content ${expected}`);
    }
    const path = this.ingestPath(ref);
    const data = join(path, 'data');
    let resumed: { offset: number; total: number; startedAt: Date; updatedAt: Date; running: RunningDigest } | undefined;
    let existed = false;
    try {
      await mkdir(path, { mode: 0o755 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      existed = true;
      if (!(await lstat(path)).isDirectory()) {
        // Not an ingest directory (a link planted there, a stray file): removed, never followed.
        this.log.warn('replacing an ingest path that is not a directory', { path });
        await rm(path, { force: true });
        await mkdir(path, { mode: 0o755 });
      } else {
        try {
          resumed = await this.resume(path, ref, total);
        } catch (e) {
          this.log.info('failed to resume ingest; starting over', { path, error: String((e as Error).message ?? e) });
        }
      }
    }
    let startedAt: Date;
    let updatedAt: Date;
    if (resumed) {
      ({ startedAt, updatedAt, total } = resumed);
    } else {
      startedAt = updatedAt = new Date();
      await writeSmallFile(join(path, 'ref'), ref);
      await writeTimestampFile(join(path, 'startedat'), startedAt);
      await writeTimestampFile(join(path, 'updatedat'), startedAt);
      if (total > 0) await writeFile(join(path, 'total'), String(total), { mode: 0o666 });
    }
    // A fresh ingest must not inherit bytes of a broken earlier one, nor write through
    // whatever an earlier one left at its data path.
    if (existed && !resumed) await rm(data, { force: true });
    const flags = C.O_WRONLY | C.O_CREAT | (resumed ? 0 : C.O_TRUNC) | C.O_NOFOLLOW;
    const fd = await openFd(data, flags, 0o666);
    return new LocalWriter({
      root: this.root,
      path,
      ref,
      fd,
      offset: resumed?.offset ?? 0,
      total,
      running: resumed?.running ?? new RunningDigest(data),
      startedAt,
      updatedAt,
      blobPath: (d) => this.blobPath(d),
      log: this.log,
    });
  }

  /** Reads an existing ingest back: its timestamps, and the digest of its data (rehashed). */
  private async resume(path: string, ref: string, total: number) {
    const st = await this.statusAt(path);
    if (st.ref !== ref) throw new Error(`ref key does not match: ${ref} != ${st.ref}`);
    if (total > 0 && st.total > 0 && total !== st.total) throw new Error(`provided total differs from status: ${total} != ${st.total}`);
    const running = await RunningDigest.resume(join(path, 'data'), st.offset);
    return { offset: st.offset, total: st.total, startedAt: st.startedAt, updatedAt: st.updatedAt, running };
  }

  /** Paths of the entries under ingest/ (none when the directory does not exist yet). */
  private async ingestDirs(): Promise<string[]> {
    try {
      return (await readdir(join(this.root, 'ingest'))).map((name) => join(this.root, 'ingest', name));
    } catch (err) {
      if (isMissing(err)) return [];
      throw err;
    }
  }

  /**
   * Removes ingests nobody is writing to whose last write is older than the stale age and
   * that `keepIngest` does not claim. Returns the refs removed.
   */
  async removeStaleIngests(now = Date.now()): Promise<string[]> {
    const removed: string[] = [];
    for (const path of await this.ingestDirs()) {
      let st: IngestStatus;
      try {
        st = await this.statusAt(path);
      } catch {
        // A directory without a readable status is debris; age it by the directory itself.
        try {
          const dst = await stat(path);
          if (now - dst.mtimeMs >= this.staleIngestAgeMs) await rm(path, { recursive: true, force: true });
        } catch { /* gone meanwhile */ }
        continue;
      }
      if (isLocked(this.root, st.ref)) continue;
      if (now - st.updatedAt.getTime() < this.staleIngestAgeMs) continue;
      if (this.keepIngest?.(st.ref, now)) continue;
      await rm(path, { recursive: true, force: true });
      this.log.info('removed stale ingest', { ref: st.ref });
      removed.push(st.ref);
    }
    return removed;
  }

  /**
   * Removes ingest directories without a `ref` file: debris of a writer stopped (a crash, a
   * kill) between creating the directory and recording its ref. Nothing can resume them, and
   * no writer of this process can be creating one yet, so call it before serving.
   */
  async removeIngestDebris(): Promise<number> {
    let removed = 0;
    for (const path of await this.ingestDirs()) {
      try {
        await lstat(join(path, 'ref'));
        continue;
      } catch (err) {
        if (!isMissing(err)) continue;
      }
      await rm(path, { recursive: true, force: true });
      this.log.info('removed an ingest left without its ref', { path });
      removed++;
    }
    return removed;
  }

  /** Runs removeStaleIngests periodically until `signal` aborts. */
  startJanitor(signal: AbortSignal): void {
    const every = Math.max(1000, Math.min(this.staleIngestAgeMs / 4, 60 * 60 * 1000));
    const timer = setInterval(() => {
      this.removeStaleIngests().catch((err) => this.log.warn('stale ingest cleanup failed', { error: String(err) }));
    }, every);
    timer.unref();
    signal.addEventListener('abort', () => clearInterval(timer), { once: true });
  }
}

