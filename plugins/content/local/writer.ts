/**
 * One locked ingest in the local store. Bytes go straight to the ingest's data file with
 * positional writes on an open descriptor (no per-chunk fsync); the running SHA-256 is kept
 * alongside (see digest.ts). Commit is the only durability point: fsync,
 * verify size and digest, rename into blobs/, make read-only.
 *
 * Why a big ingest syncs in the background as it goes: with gigabytes of RAM the kernel starts
 * no writeback of its own during an ingest, so the commit's fsync wrote the whole blob while
 * the client waited (256 MiB: ~110 ms here). An fdatasync on the thread pool every
 * WRITEBACK_BYTES overlaps that with the transfer and leaves the commit a few milliseconds.
 */
import type * as fs from 'node:fs';
import { lstat, mkdir, rename, rm, chmod, utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ContentWriter, IngestStatus } from '../../../core/content/content.js';
import type { Labels } from '../../../core/metadata/metadata.js';
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError } from '../../../core/errdefs/errdefs.js';
import { closeFd, fdatasyncFd, fstatFd, fsyncFd, ftruncateFd, writeAllAt } from '../../../core/sys/fd.js';
import type { Logger } from '../../../core/log/logger.js';
import { unlock } from './locks.js';
import { writeTimestampFile } from './files.js';
import type { RunningDigest } from './digest.js';

export interface WriterState {
  root: string;
  /** The ingest directory. */
  path: string;
  ref: string;
  fd: number;
  offset: number;
  total: number;
  running: RunningDigest;
  startedAt: Date;
  updatedAt: Date;
  blobPath: (digest: string) => string;
  log: Logger;
}

/** Bytes written between two background syncs (see the file comment). */
export const WRITEBACK_BYTES = 8 << 20;

export class LocalWriter implements ContentWriter {
  private fd: number | undefined;
  private readonly running: RunningDigest;
  private committed: string | undefined;
  private offset: number;
  private readonly total: number;
  private readonly startedAt: Date;
  private updatedAt: Date;
  private released = false;
  /** Bytes written since the last background sync started. */
  private unsynced = 0;
  private syncing: Promise<void> | undefined;
  /**
   * A background sync's failure. Linux reports a writeback error once per open file, so the
   * commit's own fsync would not see it again: the commit fails with this one.
   */
  private syncError: Error | undefined;

  constructor(private readonly s: WriterState) {
    this.fd = s.fd;
    this.running = s.running;
    this.offset = s.offset;
    this.total = s.total;
    this.startedAt = s.startedAt;
    this.updatedAt = s.updatedAt;
  }

  status(): IngestStatus {
    return { ref: this.s.ref, offset: this.offset, total: this.total, expected: '', startedAt: this.startedAt, updatedAt: this.updatedAt };
  }

  digest(): Promise<string> {
    return this.committed !== undefined ? Promise.resolve(this.committed) : this.running.digest();
  }

  async write(data: Uint8Array): Promise<void> {
    const fd = this.fd;
    if (fd === undefined) throw new FailedPreconditionError('cannot write on closed writer');
    if (data.length === 0) return;
    const position = this.offset;
    // Hashed here while the thread pool writes (digest.ts); the answer waits for both, so an
    // acknowledged chunk is in the page cache and survives kill -9 of the daemon, as with
    // containerd. On failure the file, the offset and the digest go back to where the write
    // began (a write can fail part-way, e.g. when the disk fills up): the client resumes from
    // a Stat.
    const landing = writeAllAt(fd, data, position).catch(async (err: unknown) => {
      this.offset = position;
      await ftruncateFd(fd, position).catch(() => undefined);
      await this.running.restart(position).catch(() => undefined);
      throw err;
    });
    this.running.written(data, position);
    this.offset += data.length;
    this.updatedAt = new Date();
    await landing;
    this.unsynced += data.length;
    if (this.unsynced >= WRITEBACK_BYTES && !this.syncing) this.syncInBackground(fd);
  }

  private syncInBackground(fd: number): void {
    this.unsynced = 0;
    this.syncing = fdatasyncFd(fd).then(
      () => { this.syncing = undefined; },
      (err: Error) => { this.syncing = undefined; this.syncError ??= err; },
    );
  }

  /** Waits for a background sync (it must not outlive the descriptor) and reports its failure. */
  private async settleSync(): Promise<void> {
    await this.syncing;
    if (this.syncError) throw this.syncError;
  }

  async truncate(size = 0): Promise<void> {
    if (size !== 0) throw new InvalidArgumentError('Truncate: unsupported size');
    if (this.fd === undefined) throw new FailedPreconditionError('cannot truncate closed writer');
    await this.syncing;
    await ftruncateFd(this.fd);
    this.offset = 0;
    await this.running.restart(0);
    this.updatedAt = new Date();
  }

  async commit(size: number, expected: string, _labels?: Labels): Promise<void> {
    try {
      const fd = this.fd;
      this.fd = undefined;
      if (fd === undefined) throw new FailedPreconditionError('cannot commit on closed writer');
      let st: fs.Stats;
      try {
        await this.settleSync();
        await fsyncFd(fd);
        st = await fstatFd(fd);
      } finally {
        await closeFd(fd).catch(() => undefined);
      }
      if (size > 0 && size !== st.size) {
        throw new FailedPreconditionError(`unexpected commit size ${st.size}, expected ${size}`);
      }
      const dgst = await this.running.digest();
      if (expected && expected !== dgst) {
        throw new FailedPreconditionError(`unexpected commit digest ${dgst}, expected ${expected}`);
      }
      const target = this.s.blobPath(dgst);
      await mkdir(dirname(target), { recursive: true, mode: 0o755 });
      if (await exists(target)) {
        await rm(this.s.path, { recursive: true, force: true }).catch(() => undefined);
        // The bytes were verified: the caller records the blob under this digest (the hashing
        // state is released with the writer, so the digest must be kept here).
        this.committed = dgst;
        throw new AlreadyExistsError(`content ${dgst}`);
      }
      // The rename is the commit: readers see either no blob or the whole verified blob.
      await rename(join(this.s.path, 'data'), target);
      const now = new Date();
      await utimes(target, now, now).catch((err) => this.s.log.warn('failed to set commit time', { digest: dgst, error: String(err) }));
      await rm(this.s.path, { recursive: true, force: true }).catch((err) =>
        this.s.log.warn('failed to remove ingest directory', { ref: this.s.ref, error: String(err) }),
      );
      await chmod(target, (st.mode & 0o777) & ~0o333).catch((err) =>
        this.s.log.warn('failed to make blob read-only', { digest: dgst, error: String(err) }),
      );
      this.committed = dgst;
    } finally {
      this.release();
    }
  }

  /** Closes the data file and releases the ref; the ingest stays for a later resume. */
  async close(): Promise<void> {
    const fd = this.fd;
    if (fd === undefined) {
      this.release();
      return;
    }
    this.fd = undefined;
    try {
      await this.syncing;
      await fsyncFd(fd).catch(() => undefined);
      await closeFd(fd);
      await writeTimestampFile(join(this.s.path, 'updatedat'), this.updatedAt).catch(() => undefined);
    } finally {
      this.release();
    }
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    unlock(this.s.root, this.s.ref);
  }
}

/** Whether a committed blob is at `p`: a regular file (a link there is replaced by the rename). */
async function exists(p: string): Promise<boolean> {
  try {
    return (await lstat(p)).isFile();
  } catch {
    return false;
  }
}
