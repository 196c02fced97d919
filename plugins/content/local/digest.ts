/**
 * The running SHA-256 of an ingest.
 *
 * Hashing is most of what an ingest costs the daemon (~0.9 ms per MiB), and on the main thread
 * it held up everything else the daemon had to do for the upload, the reading and decoding of
 * the next message included. Once an ingest passes WORKER_MIN_BYTES, its hashing moves to a
 * worker thread that reads the bytes back from the ingest's data file (from the page cache)
 * after each write has landed there: the main thread only posts "bytes [a, b) are written".
 * Small blobs (manifests, configs) are hashed in place: a worker hop would cost them more.
 *
 * If the worker fails, the digest is recomputed from the file on the main thread: the file,
 * not the worker's state, is the truth.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { IdleExitWorker, type WorkerJob } from '../../../core/sys/idle-worker.js';

/** Ingests hash on the worker from this size on. */
export const WORKER_MIN_BYTES = 4 * 1024 * 1024;
const READ_CHUNK = 1024 * 1024;

type ToWorker =
  | { type: 'append'; offset: number; length: number }
  | { type: 'restart'; length: number }
  | { type: 'digest'; id: number }
  | { type: 'close' };

type FromWorker = { type: 'digest'; id: number; hex?: string; bytes?: number; error?: string };

/**
 * The worker's program: one hashing session per port (see core/sys/idle-worker.ts). Its
 * helpers are methods of an object: the bundler renames and wraps named inner functions.
 */
function digestWorkerMain(load: NodeJS.Require, readChunk: number): void {
  const { parentPort } = load('node:worker_threads') as typeof import('node:worker_threads');
  const fs = load('node:fs') as typeof import('node:fs');
  const crypto = load('node:crypto') as typeof import('node:crypto');
  const buf = Buffer.allocUnsafe(readChunk);
  parentPort!.on('message', ({ port, path, prefix }: { port: MessagePort; path: string; prefix: number }) => {
    const session = {
      fd: -1,
      hash: crypto.createHash('sha256'),
      bytes: 0,
      // A failed read (the file truncated under a queued append) poisons the session until
      // the next restart; the main thread then rehashes from the file.
      failure: undefined as string | undefined,
      hashRange(offset: number, length: number): void {
        if (this.failure !== undefined) return;
        try {
          if (offset !== this.bytes) throw new Error(`bytes from ${offset} queued after ${this.bytes}`);
          if (this.fd < 0) this.fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
          const end = offset + length;
          for (let at = offset; at < end; ) {
            const n = fs.readSync(this.fd, buf, 0, Math.min(buf.length, end - at), at);
            if (n === 0) throw new Error(`${path} ends at ${at}, before ${end}`);
            this.hash.update(buf.subarray(0, n));
            at += n;
          }
          this.bytes = end;
        } catch (err) {
          this.failure = (err as Error).message;
        }
      },
      restart(length: number): void {
        this.hash = crypto.createHash('sha256');
        this.bytes = 0;
        this.failure = undefined;
        if (length > 0) this.hashRange(0, length);
      },
    };
    session.restart(prefix);
    port.on('message', (m: ToWorker) => {
      switch (m.type) {
        case 'append': session.hashRange(m.offset, m.length); break;
        case 'restart': session.restart(m.length); break;
        case 'digest':
          port.postMessage(session.failure !== undefined
            ? { type: 'digest', id: m.id, error: session.failure }
            : { type: 'digest', id: m.id, hex: session.hash.copy().digest('hex'), bytes: session.bytes });
          break;
        case 'close':
          if (session.fd >= 0) fs.closeSync(session.fd);
          port.close();
          break;
      }
    });
  });
}

const pool = new IdleExitWorker('ingest hashing', digestWorkerMain, [READ_CHUNK]);

/** One ingest's hashing on the worker. */
class WorkerSession implements WorkerJob {
  private readonly port: MessagePort;
  private nextId = 0;
  private readonly waiting = new Map<number, { resolve: (hex: string) => void; reject: (err: Error) => void; bytes: number }>();
  private failure: Error | undefined;
  private closed = false;

  constructor(path: string, prefix: number) {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    pool.acquire(this).postMessage({ port: port2, path, prefix }, [port2]);
    port1.on('message', (m: FromWorker) => this.answer(m));
    // A writer a client left open must not keep the daemon alive at shutdown.
    port1.unref();
  }

  private post(m: ToWorker): void {
    if (!this.closed && !this.failure) this.port.postMessage(m);
  }

  append(offset: number, length: number): void {
    this.post({ type: 'append', offset, length });
  }

  restart(length: number): void {
    this.post({ type: 'restart', length });
  }

  /** The hex digest of the first `bytes` bytes, once the worker has hashed them. */
  digest(bytes: number): Promise<string> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error('ingest hashing session is closed'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, bytes });
      this.port.ref();
      this.post({ type: 'digest', id });
    });
  }

  private answer(m: FromWorker): void {
    const w = this.waiting.get(m.id);
    if (!w) return;
    this.waiting.delete(m.id);
    if (!this.waiting.size) this.port.unref();
    if (m.error !== undefined) w.reject(new Error(m.error));
    else if (m.bytes !== w.bytes) w.reject(new Error(`hashed ${m.bytes} bytes, expected ${w.bytes}`));
    else w.resolve(m.hex!);
  }

  fail(err: Error): void {
    this.failure = err;
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.failure) this.port.postMessage({ type: 'close' } satisfies ToWorker);
    this.port.close();
    pool.release(this);
  }
}

/** SHA-256 of the first `length` bytes of `file`, streamed on this thread. */
export async function hashFilePrefix(file: string, length: number): Promise<Hash> {
  const hash = createHash('sha256');
  if (length <= 0) return hash;
  let read = 0;
  const stream = createReadStream(file, { start: 0, end: length - 1, highWaterMark: 4 << 20 });
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    read += (chunk as Buffer).length;
  }
  if (read !== length) throw new Error(`${file} holds ${read} bytes, expected ${length}`);
  return hash;
}

export interface RunningDigestOptions {
  /** Where hashing may move off the main thread (false: always in place). */
  useWorker?: boolean;
  onWorkerFailure?: (err: Error) => void;
}

/** The digest of the bytes at the start of an ingest's data file, kept up as it grows. */
export class RunningDigest {
  private hash: Hash | undefined = createHash('sha256');
  private session: WorkerSession | undefined;
  private bytes = 0;

  constructor(private readonly file: string, private readonly opts: RunningDigestOptions = {}) {}

  /** The running digest of a resumed ingest whose file holds `length` valid bytes. */
  static async resume(file: string, length: number, opts: RunningDigestOptions = {}): Promise<RunningDigest> {
    const d = new RunningDigest(file, opts);
    await d.restart(length);
    return d;
  }

  /** `data` has landed in the file at `position`, right after the bytes hashed so far. */
  written(data: Uint8Array, position: number): void {
    if (position !== this.bytes) throw new Error(`ingest digest: write at ${position} after ${this.bytes} bytes`);
    this.bytes += data.length;
    if (this.session) return this.session.append(position, data.length);
    this.hash!.update(data);
    if (this.belongsOnWorker(this.bytes)) {
      // The worker hashes the prefix again from the file: cheaper than carrying the state over.
      this.session = new WorkerSession(this.file, this.bytes);
      this.hash = undefined;
    }
  }

  /** Starts over from the first `length` bytes of the file (0 after a truncate). */
  async restart(length: number): Promise<void> {
    this.bytes = length;
    if (this.belongsOnWorker(length)) {
      this.hash = undefined;
      if (this.session) this.session.restart(length);
      else this.session = new WorkerSession(this.file, length);
      return;
    }
    this.session?.close();
    this.session = undefined;
    this.hash = undefined;
    this.hash = await hashFilePrefix(this.file, length);
  }

  private belongsOnWorker(bytes: number): boolean {
    return bytes >= WORKER_MIN_BYTES && this.opts.useWorker !== false;
  }

  /** `sha256:<hex>` of every byte written so far. */
  async digest(): Promise<string> {
    if (this.session) {
      try {
        return `sha256:${await this.session.digest(this.bytes)}`;
      } catch (err) {
        this.opts.onWorkerFailure?.(err as Error);
        this.session.close();
        this.session = undefined;
        this.hash = await hashFilePrefix(this.file, this.bytes);
      }
    }
    // No state: closed, or a restart that failed to read the file back.
    if (!this.hash) throw new Error(`ingest digest of ${this.file} is not available (writer closed or restart failed)`);
    // Digesting a copy keeps the running state for further writes.
    return `sha256:${this.hash.copy().digest('hex')}`;
  }

  /** Ends the worker session, if any. */
  close(): void {
    this.session?.close();
    this.session = undefined;
  }
}
