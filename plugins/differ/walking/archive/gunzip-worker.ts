/**
 * Gunzip and the diff-id hash of a big layer on a worker thread.
 *
 * Applying a layer is bound by the main thread: it parses the tar and makes every file with
 * synchronous system calls (see apply.ts). With the decompressed stream produced on the main
 * thread, the 240 MB layer of the bench image also cost it ~110 ms of zlib completion
 * callbacks and ~130 ms of SHA-256 over the uncompressed bytes, while the second core sat
 * mostly idle. Here a worker inflates and hashes; the main thread only receives finished
 * chunks (transferred, not copied) and gets the digest and size at the end.
 *
 * One worker serves every layer being applied (each over its own MessageChannel; an image's
 * layers are applied one after the other, a few milliseconds apart) and exits after two idle
 * seconds, so an idle daemon does not keep a second V8 heap resident.
 * Flow control runs both ways: compressed input stops being read while too much of it waits
 * in the worker, and the worker inflates at most a few chunks ahead of what the applier has
 * asked for.
 */
import { Readable } from 'node:stream';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { IdleExitWorker, type WorkerJob } from '../../../../core/sys/idle-worker.js';

/** Layers smaller than this (compressed) are inflated on the main thread: not worth a hop. */
export const WORKER_MIN_LAYER_BYTES = 4 * 1024 * 1024;
const IDLE_EXIT_MS = 2000;
/** Compressed bytes posted to the worker but not yet taken by zlib. */
const MAX_INPUT_IN_FLIGHT = 4 * 1024 * 1024;
const INFLATE_CHUNK = 256 * 1024;
/**
 * Inflated chunks the worker may have sent that the applier has not asked for yet. A worker
 * running ahead fills the main thread's message queue, and the chunks all surviving
 * collections there made V8 grow the daemon's young generation to its maximum for good.
 */
const MAX_CHUNKS_AHEAD = 4;

type ToWorker =
  | { type: 'data'; chunk: Uint8Array }
  | { type: 'end' }
  | { type: 'credit'; chunks: number }
  | { type: 'abort' };

type FromWorker =
  | { type: 'data'; chunk: Uint8Array }
  | { type: 'consumed'; bytes: number }
  | { type: 'end'; digest: string; bytes: number }
  | { type: 'error'; message: string; code?: string };

/** The worker's program (see core/sys/idle-worker.ts for what it may use). */
function workerMain(load: NodeJS.Require, chunkSize: number, maxAhead: number): void {
  const { parentPort } = load('node:worker_threads') as typeof import('node:worker_threads');
  const zlib = load('node:zlib') as typeof import('node:zlib');
  const crypto = load('node:crypto') as typeof import('node:crypto');
  parentPort!.on('message', ({ port }: { port: MessagePort }) => {
    const gunzip = zlib.createGunzip({ chunkSize });
    const hash = crypto.createHash('sha256');
    let bytes = 0;
    let done = false;
    let ahead = 0;
    gunzip.on('data', (out: Buffer) => {
      hash.update(out);
      bytes += out.length;
      // zlib hands out slices of a buffer it keeps filling: copy into one we can give away.
      const chunk = new Uint8Array(out.length);
      chunk.set(out);
      port.postMessage({ type: 'data', chunk }, [chunk.buffer]);
      if (++ahead >= maxAhead) gunzip.pause();
    });
    gunzip.on('end', () => {
      done = true;
      port.postMessage({ type: 'end', digest: `sha256:${hash.digest('hex')}`, bytes });
    });
    gunzip.on('error', (err: NodeJS.ErrnoException) => {
      if (done) return;
      done = true;
      port.postMessage({ type: 'error', message: err.message, code: err.code });
    });
    port.on('message', (m: { type: string; chunk?: Uint8Array; chunks?: number }) => {
      switch (m.type) {
        case 'data': {
          const input = m.chunk!;
          gunzip.write(Buffer.from(input.buffer, input.byteOffset, input.byteLength), () => {
            if (!done) port.postMessage({ type: 'consumed', bytes: input.byteLength });
          });
          break;
        }
        case 'end': gunzip.end(); break;
        case 'credit':
          ahead -= m.chunks!;
          if (ahead < maxAhead && !done) gunzip.resume();
          break;
        case 'abort':
          done = true;
          gunzip.destroy();
          port.close();
          break;
      }
    });
  });
}

const pool = new IdleExitWorker('layer decompression', workerMain, [INFLATE_CHUNK, MAX_CHUNKS_AHEAD], IDLE_EXIT_MS);

/**
 * The decompressed bytes of a gzip stream, inflated on the worker. `digest` and `bytes` (the
 * uncompressed layer's diff id and size) are set once the stream has ended.
 */
export class WorkerGunzip extends Readable implements WorkerJob {
  digest = '';
  bytes = 0;
  private readonly port: MessagePort;
  private inFlight = 0;
  /** Chunks received and not yet acknowledged to the worker. */
  private unacknowledged = 0;
  private finished = false;

  constructor(private readonly source: Readable) {
    super({ highWaterMark: INFLATE_CHUNK });
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    pool.acquire(this).postMessage({ port: port2 }, [port2]);
    port1.on('message', (m: FromWorker) => this.onWorkerMessage(m));
    source.on('data', (chunk: Buffer) => {
      // A private copy to hand over: the source may reuse or share its buffer.
      const copy = new Uint8Array(chunk.length);
      copy.set(chunk);
      this.inFlight += copy.length;
      this.send({ type: 'data', chunk: copy }, [copy.buffer]);
      if (this.inFlight > MAX_INPUT_IN_FLIGHT) source.pause();
    });
    source.on('end', () => this.send({ type: 'end' }));
    source.on('error', (err) => this.destroy(err));
  }

  fail(err: Error): void {
    this.destroy(err);
  }

  private send(m: ToWorker, transfer?: ArrayBuffer[]): void {
    if (!this.finished) this.port.postMessage(m, transfer);
  }

  private onWorkerMessage(m: FromWorker): void {
    if (this.finished) return;
    switch (m.type) {
      case 'data':
        this.unacknowledged++;
        this.push(Buffer.from(m.chunk.buffer, m.chunk.byteOffset, m.chunk.byteLength));
        break;
      case 'consumed':
        this.inFlight -= m.bytes;
        if (this.inFlight <= MAX_INPUT_IN_FLIGHT / 2 && this.source.isPaused()) this.source.resume();
        break;
      case 'end':
        this.digest = m.digest;
        this.bytes = m.bytes;
        this.finish();
        this.push(null);
        break;
      case 'error': {
        // The same error zlib raises on the main thread (message and Z_* code).
        const err = new Error(m.message) as NodeJS.ErrnoException;
        if (m.code) err.code = m.code;
        this.destroy(err);
        break;
      }
    }
  }

  /** The applier wants more: the chunks it has taken may be replaced. */
  override _read(): void {
    if (this.unacknowledged) {
      this.send({ type: 'credit', chunks: this.unacknowledged });
      this.unacknowledged = 0;
    }
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.port.close();
    pool.release(this);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.finished) this.send({ type: 'abort' });
    this.finish();
    if (!this.source.readableEnded) this.source.destroy();
    cb(err);
  }
}
