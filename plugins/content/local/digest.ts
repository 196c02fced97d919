/**
 * The running SHA-256 of an ingest.
 *
 * Every answer to a Content.Write request carries the digest of all bytes so far (as
 * containerd's do: Go clients keep the last one as the writer's Digest()), so a chunk's hash
 * is on the critical path of each round trip. It is computed on this thread from the
 * received bytes while the thread pool writes the same bytes to the data file (writer.ts):
 * the answer waits for the longer of the two, not for their sum. (Hashing
 * each HTTP/2 frame as it arrived, on this thread or on a worker reading shared memory, was
 * measured too: on two cores the sender, the receiving thread and the hash compete for the
 * same CPU, and neither beat hashing the whole chunk here. An earlier design hashed on
 * a worker thread that read each chunk back from the file after it had landed; with a
 * digest in every answer, that put the write, the hop and the hash in series, ~25% slower.)
 *
 * A write that fails after its bytes were hashed rehashes the file's valid prefix: the file,
 * not this state, is the truth.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/** SHA-256 of the first `length` bytes of `file`, streamed. */
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

/** The digest of the bytes at the start of an ingest's data file, kept up as it grows. */
export class RunningDigest {
  private hash: Hash | undefined = createHash('sha256');
  private bytes = 0;

  constructor(private readonly file: string) {}

  /** The running digest of a resumed ingest whose file holds `length` valid bytes. */
  static async resume(file: string, length: number): Promise<RunningDigest> {
    const d = new RunningDigest(file);
    await d.restart(length);
    return d;
  }

  /**
   * `data` goes into the file at `position`, right after the bytes hashed so far (it may
   * still be on its way there: a failed write calls restart()).
   */
  written(data: Uint8Array, position: number): void {
    if (position !== this.bytes) throw new Error(`ingest digest: write at ${position} after ${this.bytes} bytes`);
    this.state().update(data);
    this.bytes += data.length;
  }

  /** The hash state; none after a restart that failed to read the file back. */
  private state(): Hash {
    if (!this.hash) throw new Error(`ingest digest of ${this.file} is not available (restart failed)`);
    return this.hash;
  }

  /** Starts over from the first `length` bytes of the file (0 after a truncate). */
  async restart(length: number): Promise<void> {
    this.hash = undefined;
    this.bytes = length;
    this.hash = await hashFilePrefix(this.file, length);
  }

  /** `sha256:<hex>` of every byte written so far. */
  async digest(): Promise<string> {
    // Digesting a copy keeps the running state for further writes.
    return `sha256:${this.state().copy().digest('hex')}`;
  }
}
