/**
 * Content access over the Content gRPC service: info/update/read/list, and a pipelined writer
 * for the Write protocol (STAT, WRITE…, COMMIT). Works against berthd and containerd alike.
 *
 * The writer coalesces small chunks into messages of up to 1 MiB and keeps several WRITE
 * requests in flight (the server answers each one in order), so streaming a registry response
 * into the daemon is not bound by one round trip per chunk.
 */
import { Readable } from 'node:stream';
import type { Connection, DuplexCall } from '../connection.js';
import { AlreadyExistsError, FailedPreconditionError, isAlreadyExists, isUnavailable } from '../../core/errdefs/errdefs.js';
import type { Descriptor } from '../../core/images/images.js';

type ContentDef = typeof import('../../api/gen/services/content/v1/content.js').ContentDefinition;
type WriteDef = ContentDef['methods']['write'];

export interface ContentInfo {
  digest: string;
  size: number;
  createdAt: Date;
  updatedAt: Date;
  labels: Record<string, string>;
}

export interface IngestStatus {
  ref: string;
  offset: number;
  total: number;
  expected: string;
  startedAt?: Date;
  updatedAt?: Date;
}

export interface OpenWriterOptions {
  ref: string;
  /** Expected size (0 = unknown). */
  total?: number;
  /** Expected digest ('' = unknown). */
  expected?: string;
  signal?: AbortSignal;
}

/** The largest data payload per WRITE message. */
export const WRITE_CHUNK = 1 << 20;
/** WRITE messages sent before waiting for the first of their answers. */
const WRITE_WINDOW = 8;

let codec: Promise<typeof import('../../api/gen/services/content/v1/content.js')> | undefined;
const contentApi = () => (codec ??= import('../../api/gen/services/content/v1/content.js'));

const toInfo = (i: { digest: string; size: number; createdAt?: Date; updatedAt?: Date; labels?: Record<string, string> } | undefined): ContentInfo => ({
  digest: i?.digest ?? '',
  size: i?.size ?? 0,
  createdAt: i?.createdAt ?? new Date(0),
  updatedAt: i?.updatedAt ?? new Date(0),
  labels: { ...(i?.labels ?? {}) },
});

/** The Content service of one connection (namespace and lease come from the connection). */
export class ContentClient {
  constructor(readonly conn: Connection) {}

  private async svc() {
    const { ContentDefinition } = await contentApi();
    return this.conn.service(ContentDefinition);
  }

  async info(digest: string): Promise<ContentInfo> {
    const res = await (await this.svc()).info({ digest });
    return toInfo(res.info);
  }

  /** Info, or undefined when the blob does not exist. */
  async stat(digest: string): Promise<ContentInfo | undefined> {
    try {
      return await this.info(digest);
    } catch (err) {
      if ((err as { code?: number }).code === 5) return undefined;
      throw err;
    }
  }

  async update(digest: string, labels: Record<string, string>, fieldpaths: readonly string[]): Promise<ContentInfo> {
    const res = await (await this.svc()).update({ info: { digest, labels }, updateMask: [...fieldpaths] });
    return toInfo(res.info);
  }

  /** Sets (or, with '', removes) labels one key at a time, leaving the others. */
  setLabels(digest: string, labels: Record<string, string>): Promise<ContentInfo> {
    return this.update(digest, labels, Object.keys(labels).map((k) => `labels.${k}`));
  }

  async delete(digest: string): Promise<void> {
    await (await this.svc()).delete({ digest });
  }

  async *list(filters: readonly string[] = []): AsyncIterable<ContentInfo> {
    for await (const batch of (await this.svc()).list({ filters: [...filters] })) {
      for (const i of batch.info) yield toInfo(i);
    }
  }

  async listStatuses(filters: readonly string[] = []): Promise<IngestStatus[]> {
    const res = await (await this.svc()).listStatuses({ filters: [...filters] });
    return res.statuses.map((s) => ({ ref: s.ref, offset: s.offset, total: s.total, expected: s.expected, startedAt: s.startedAt, updatedAt: s.updatedAt }));
  }

  async abort(ref: string): Promise<void> {
    await (await this.svc()).abort({ ref });
  }

  /** The blob's bytes from `offset` (`size` 0 = to the end), as they stream in. */
  async *read(digest: string, offset = 0, size = 0, signal?: AbortSignal): AsyncIterable<Buffer> {
    for await (const r of (await this.svc()).read({ digest, offset, size }, { signal })) {
      if (r.data.length) yield r.data;
    }
  }

  /** A Readable over read(). */
  readStream(digest: string, offset = 0, signal?: AbortSignal): Readable {
    return Readable.from(this.read(digest, offset, 0, signal), { objectMode: false, highWaterMark: 1 << 20 });
  }

  /** A whole (small) blob, checked against the descriptor's size. */
  async readBlob(desc: Pick<Descriptor, 'digest' | 'size'>, maxSize = 64 << 20): Promise<Buffer> {
    if (desc.size > maxSize) throw new FailedPreconditionError(`${desc.digest}: blob of ${desc.size} bytes is too large to read into memory`);
    const parts: Buffer[] = [];
    let n = 0;
    for await (const c of this.read(desc.digest)) {
      parts.push(c);
      n += c.length;
    }
    const data = Buffer.concat(parts, n);
    if (desc.size > 0 && data.length !== desc.size) {
      throw new FailedPreconditionError(`${desc.digest}: read ${data.length} bytes, expected ${desc.size}`);
    }
    return data;
  }

  /** Reads and parses a JSON blob (manifest, index, config). */
  async readJSON<T>(desc: Pick<Descriptor, 'digest' | 'size'>): Promise<T> {
    return JSON.parse((await this.readBlob(desc)).toString('utf8')) as T;
  }

  /**
   * Opens a writer for `ref`. ALREADY_EXISTS when `expected` is committed already; a locked
   * ref (UNAVAILABLE) is retried with a growing random backoff, as the Go client does.
   */
  async writer(opts: OpenWriterOptions): Promise<RemoteWriter> {
    let backoff = 16;
    for (;;) {
      try {
        return await RemoteWriter.open(this, opts);
      } catch (err) {
        if (!isUnavailable(err) || opts.signal?.aborted) throw err;
        await new Promise((r) => setTimeout(r, Math.random() * backoff));
        if (backoff < 2048) backoff *= 2;
      }
    }
  }

  /** @internal the raw Write call. */
  async openWrite(signal?: AbortSignal): Promise<DuplexCall<WriteDef>> {
    return (await this.svc()).write({ signal });
  }

  /**
   * Writes a whole blob (bytes or a stream) under `ref` and commits it; a blob that already
   * exists counts as success. Returns false when nothing had to be written.
   */
  async writeBlob(ref: string, source: Uint8Array | AsyncIterable<Uint8Array>, desc: Pick<Descriptor, 'digest' | 'size'>, labels?: Record<string, string>): Promise<boolean> {
    let w: RemoteWriter;
    try {
      w = await this.writer({ ref, total: desc.size, expected: desc.digest });
    } catch (err) {
      if (isAlreadyExists(err)) return false;
      throw err;
    }
    try {
      if (w.status.offset === desc.size && desc.size > 0) {
        await w.commit(desc.size, desc.digest, labels);
        return true;
      }
      if (w.status.offset > 0) w.truncate();
      if (source instanceof Uint8Array) await w.write(source);
      else for await (const c of source) await w.write(c);
      await w.commit(desc.size, desc.digest, labels);
      return true;
    } catch (err) {
      if (isAlreadyExists(err)) return false;
      throw err;
    } finally {
      w.close();
    }
  }
}

type WriteRequest = Parameters<DuplexCall<WriteDef>['write']>[0];
type WriteResponse = Awaited<ReturnType<AsyncIterator<Awaited<ReturnType<WriteDef['responseType']['decode']>>>['next']>>['value'];

/** One Write stream: the client half of the content ingest protocol. */
export class RemoteWriter {
  status: IngestStatus;
  /** Digest reported by the server after commit. */
  digest = '';
  private offset: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private inflight: { expectEnd: number; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private failure: unknown;
  private closed = false;
  private pump: Promise<void> | undefined;
  private waiters: (() => void)[] = [];

  private constructor(private readonly call: DuplexCall<WriteDef>, private readonly iter: AsyncIterator<WriteResponse>, status: IngestStatus) {
    this.status = status;
    this.offset = status.offset;
  }

  static async open(client: ContentClient, opts: OpenWriterOptions): Promise<RemoteWriter> {
    const { WriteAction } = await contentApi();
    const call = await client.openWrite(opts.signal);
    await call.write({ action: WriteAction.STAT, ref: opts.ref, total: opts.total ?? 0, expected: opts.expected ?? '' } as WriteRequest);
    const it = call.responses[Symbol.asyncIterator]();
    let first: IteratorResult<WriteResponse>;
    try {
      first = await it.next();
    } catch (err) {
      call.cancel();
      throw err;
    }
    if (first.done) {
      call.cancel();
      throw new Error(`content write ${opts.ref}: stream closed before the first status`);
    }
    const r = first.value;
    return new RemoteWriter(call, it, {
      ref: opts.ref,
      offset: r.offset,
      total: r.total,
      expected: opts.expected ?? '',
      startedAt: r.startedAt,
      updatedAt: r.updatedAt,
    });
  }

  /** Makes the next write start again at `offset` 0 (the server truncates on it). */
  truncate(): void {
    this.offset = 0;
    this.status.offset = 0;
  }

  /** Bytes accepted so far (sent or buffered). */
  get written(): number {
    return this.offset + this.pendingBytes;
  }

  /** Appends data (buffered into messages of up to WRITE_CHUNK bytes). */
  async write(data: Uint8Array): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    let buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    while (buf.length) {
      const room = WRITE_CHUNK - this.pendingBytes;
      const part = buf.length > room ? buf.subarray(0, room) : buf;
      this.pending.push(part);
      this.pendingBytes += part.length;
      buf = buf.subarray(part.length);
      if (this.pendingBytes >= WRITE_CHUNK) await this.flush();
    }
  }

  /** Sends buffered data as one WRITE message, keeping at most WRITE_WINDOW unanswered. */
  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const { WriteAction } = await contentApi();
    const data = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    const offset = this.offset;
    this.pending = [];
    this.pendingBytes = 0;
    this.offset += data.length;
    while (this.inflight.length >= WRITE_WINDOW && this.failure === undefined) {
      await new Promise<void>((r) => this.waiters.push(r));
    }
    if (this.failure !== undefined) throw this.failure;
    const done = this.expect(this.offset);
    done.catch(() => undefined);
    await this.call.write({ action: WriteAction.WRITE, offset, data } as WriteRequest);
  }

  /** Registers the answer to the request just sent; the pump matches answers in order. */
  private expect(expectEnd: number): Promise<void> {
    const p = new Promise<void>((resolve, reject) => this.inflight.push({ expectEnd, resolve, reject }));
    this.pump ??= this.runPump();
    return p;
  }

  private async runPump(): Promise<void> {
    try {
      while (this.inflight.length) {
        const next = await this.iter.next();
        const head = this.inflight.shift()!;
        this.wake();
        if (next.done) {
          const err = new Error(`content write ${this.status.ref}: stream closed early`);
          head.reject(err);
          this.fail(err);
          return;
        }
        const r = next.value;
        if (r.digest) this.digest = r.digest;
        this.status.offset = r.offset;
        this.status.updatedAt = r.updatedAt;
        if (r.offset !== head.expectEnd) {
          const err = new Error(`content write ${this.status.ref}: short write (server at ${r.offset}, expected ${head.expectEnd})`);
          head.reject(err);
          this.fail(err);
          return;
        }
        head.resolve();
      }
    } catch (err) {
      this.fail(err);
    } finally {
      this.pump = undefined;
      if (this.inflight.length && this.failure === undefined) this.pump = this.runPump();
    }
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private fail(err: unknown): void {
    this.failure ??= err;
    for (const h of this.inflight.splice(0)) h.reject(err);
    this.wake();
  }

  /** Waits for every WRITE sent so far to be answered. */
  async drain(): Promise<void> {
    await this.flush();
    while (this.inflight.length && this.failure === undefined) {
      await new Promise<void>((r) => this.waiters.push(r));
    }
    if (this.failure !== undefined) throw this.failure;
  }

  /**
   * Sends the rest and commits: the server checks `size` (0 = any) and `expected` ('' = any)
   * and publishes the blob with `labels`. ALREADY_EXISTS when the blob was committed meanwhile.
   */
  async commit(size: number, expected: string, labels?: Record<string, string>): Promise<void> {
    await this.drain();
    const { WriteAction } = await contentApi();
    const done = this.expect(size > 0 ? size : this.offset);
    done.catch(() => undefined);
    await this.call.write({ action: WriteAction.COMMIT, offset: this.offset, total: size, expected, labels: labels ?? {} } as WriteRequest);
    await done;
    if (expected && this.digest && this.digest !== expected) {
      throw new FailedPreconditionError(`unexpected commit digest ${this.digest}, expected ${expected}`);
    }
  }

  /** Ends the stream (an uncommitted ingest stays for a later resume). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.call.end();
    } catch {
      /* already gone */
    }
    // Drain what the server still sends (containerd repeats its last answer) and the status.
    void (async () => {
      try {
        for (;;) {
          const n = await this.iter.next();
          if (n.done) break;
        }
      } catch {
        /* ignore */
      }
    })();
  }

  /** Abandons the stream without ending it cleanly. */
  cancel(): void {
    this.closed = true;
    this.call.cancel();
  }
}

export { AlreadyExistsError };
