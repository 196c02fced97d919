/**
 * Container stdio, the way containerd's runc shim plumbs it.
 *
 * Without a terminal the shim makes one pipe per requested stream, gives the container's ends
 * to runc as its fd 0/1/2 (runc passes them on to the container process), and copies between
 * its own ends and the client's FIFOs. With a terminal runc hands back a pty master instead
 * (console.ts) and the copying runs between the master and the FIFOs.
 *
 * FIFOs are opened so that no open(2) can block the event loop or a libuv worker, and so that
 * the client coming and going cannot break the copy (containerd's fifo package does the same):
 *  - stdout/stderr: O_RDWR|O_NONBLOCK. An O_RDWR open of a FIFO never blocks, and because the
 *    shim then also counts as a reader, writes never fail with EPIPE while the client is away;
 *    once the pipe buffer is full, the copy simply waits (back-pressure into the container).
 *  - stdin: the reading end O_RDONLY|O_NONBLOCK, plus a writing end O_WRONLY|O_NONBLOCK that is
 *    only held, never written to. Holding it keeps the reader from seeing EOF when the client
 *    closes its side early; CloseIO releases it, so the container sees EOF on stdin once the
 *    client has closed its writer too.
 * Each FIFO fd is wrapped in a net.Socket (libuv treats a FIFO as a pipe: epoll, non-blocking).
 */
import { closeSync, constants, createWriteStream, fstatSync, openSync, statSync } from 'node:fs';
import { write as fsWrite } from 'node:fs';
import { Socket } from 'node:net';
import { ReadStream as TtyReadStream } from 'node:tty';
import type { Readable, Writable } from 'node:stream';
import { InvalidArgumentError } from '../../core/errdefs/errdefs.js';
import { ioctl } from '../../core/sys/syscalls.js';
import { closeFd, pipe, setNonBlocking } from './libc.js';
import type { ChildStdio } from './runc.js';

export interface StdioPaths {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

export interface ProcessIO {
  /** Resolves once everything the process wrote has been copied out (or the copy failed). */
  readonly outputDone: Promise<void>;
  /** CloseIO: drop the shim's hold on the stdin FIFO so EOF can reach the process. */
  closeStdin(): void;
  /** ResizePty; a no-op without a terminal. */
  resize(width: number, height: number): void;
  /** Tears everything down (Delete). */
  close(): void;
}

const TIOCSWINSZ = 0x5414;

// ---- destinations --------------------------------------------------------------------------

/** The writable side for a stdout/stderr path: a FIFO, or a file opened for append. */
function openOutput(path: string): Writable {
  const target = outputTarget(path);
  if (isFifo(target)) {
    const fd = openSync(target, constants.O_RDWR | constants.O_NONBLOCK);
    return new Socket({ fd, readable: false, writable: true });
  }
  return createWriteStream(target, { flags: 'a' });
}

function outputTarget(path: string): string {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(path)?.[1]?.toLowerCase();
  if (!scheme || scheme === 'fifo') return scheme ? path.slice('fifo://'.length) : path;
  if (scheme === 'file') return decodeURIComponent(path.slice('file://'.length));
  throw new InvalidArgumentError(`unsupported STDIO scheme ${scheme}`);
}

/** Rejects stdio that cannot be served (e.g. binary:// loggers) before runc creates anything. */
export function checkStdio(paths: StdioPaths): void {
  if (paths.stdout) outputTarget(paths.stdout);
  if (paths.stderr) outputTarget(paths.stderr);
}

function isFifo(path: string): boolean {
  try {
    return statSync(path).isFIFO();
  } catch {
    return false;
  }
}

/** The stdin FIFO: a readable end plus the held writer (see the file comment). */
class StdinFifo {
  readonly reader: Socket;
  private holder: number | undefined;

  constructor(path: string) {
    const readFd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    this.reader = new Socket({ fd: readFd, readable: true, writable: false });
    this.reader.on('error', () => { /* the copy ends with the stream */ });
    try {
      this.holder = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
    } catch {
      // Not a FIFO after all, or gone: nothing to hold.
    }
  }

  release(): void {
    if (this.holder === undefined) return;
    const fd = this.holder;
    this.holder = undefined;
    try {
      closeSync(fd);
    } catch { /* already closed */ }
  }

  close(): void {
    this.release();
    this.reader.destroy();
  }
}

/** Copies `source` into `dest` and resolves when dest is closed (source ended or failed). */
function copy(source: Readable, dest: Writable): Promise<void> {
  return new Promise<void>((resolve) => {
    let settled = false;
    const done = () => {
      if (settled) return;
      settled = true;
      resolve();
    };
    source.on('error', () => dest.end());
    dest.on('error', () => {
      source.unpipe(dest);
      source.resume(); // keep draining so the process never blocks on a dead destination
      done();
    });
    dest.on('close', done);
    dest.on('finish', () => {
      // A FIFO socket has no writable half to shut down; close it so the client sees EOF.
      if (dest instanceof Socket) dest.destroy();
      else done();
    });
    source.pipe(dest);
  });
}

// ---- pipes ---------------------------------------------------------------------------------

/**
 * Pipe-based IO: create() before runc runs, `childStdio` for runc's spawn, releaseChildEnds()
 * once runc has them, then start() to open the FIFOs and copy.
 */
export class PipeIO implements ProcessIO {
  readonly childStdio: ChildStdio = ['ignore', 'ignore', 'ignore'];
  private readonly ours: Array<number | undefined> = [undefined, undefined, undefined];
  private stdin: StdinFifo | undefined;
  private stdinPipe: Socket | undefined;
  private readonly outputs: Socket[] = [];
  private done: Promise<void> = Promise.resolve();

  constructor(private readonly paths: StdioPaths) {
    checkStdio(paths);
    try {
      if (paths.stdin) this.makePipe(0);
      if (paths.stdout) this.makePipe(1);
      if (paths.stderr) this.makePipe(2);
    } catch (err) {
      this.close();
      throw err;
    }
  }

  get outputDone(): Promise<void> {
    return this.done;
  }

  private makePipe(index: 0 | 1 | 2): void {
    const [r, w] = pipe();
    // The process reads stdin and writes stdout/stderr; the shim holds the other end.
    this.childStdio[index] = index === 0 ? r : w;
    this.ours[index] = index === 0 ? w : r;
  }

  /** Closes the shim's copies of the container's ends (runc's child holds its own). */
  releaseChildEnds(): void {
    for (let i = 0; i < 3; i++) {
      const fd = this.childStdio[i];
      if (typeof fd === 'number') closeFd(fd);
      this.childStdio[i] = 'ignore';
    }
  }

  start(): void {
    const copies: Promise<void>[] = [];
    const outPaths = [this.paths.stdout, this.paths.stderr];
    for (const index of [1, 2] as const) {
      const fd = this.ours[index];
      if (fd === undefined) continue;
      this.ours[index] = undefined;
      const source = new Socket({ fd, readable: true, writable: false });
      this.outputs.push(source);
      copies.push(copy(source, openOutput(outPaths[index - 1]!)));
    }
    const inFd = this.ours[0];
    if (inFd !== undefined) {
      this.ours[0] = undefined;
      this.stdinPipe = new Socket({ fd: inFd, readable: false, writable: true });
      this.stdinPipe.on('error', () => { /* the process is gone or closed its stdin */ });
      this.stdin = new StdinFifo(this.paths.stdin);
      this.stdin.reader.pipe(this.stdinPipe);
    }
    this.done = Promise.all(copies).then(() => undefined);
  }

  closeStdin(): void {
    this.stdin?.release();
  }

  resize(): void {
    // no terminal
  }

  close(): void {
    this.releaseChildEnds();
    for (let i = 0; i < 3; i++) {
      const fd = this.ours[i];
      if (fd !== undefined) closeFd(fd);
      this.ours[i] = undefined;
    }
    this.stdin?.close();
    this.stdinPipe?.destroy();
    for (const source of this.outputs) source.destroy();
  }
}

// ---- console -------------------------------------------------------------------------------

/**
 * IO for a process with a terminal: output from the pty master to the stdout FIFO, input from
 * the stdin FIFO into the master. The master is read through a tty.ReadStream on a duplicate
 * descriptor (Node's net.Socket refuses tty fds); the original stays with this object for
 * writes and TIOCSWINSZ, so a resize can never hit a recycled fd number after the reader has
 * closed its copy. Reading the master fails with EIO once every slave fd is closed, which is
 * the end of output.
 */
export class ConsoleIO implements ProcessIO {
  private master: number | undefined;
  private readonly reader: TtyReadStream;
  private stdin: StdinFifo | undefined;
  private readonly done: Promise<void>;
  private pending: Buffer[] = [];
  private writing = false;

  constructor(masterFd: number, readerFd: number, paths: StdioPaths) {
    setNonBlocking(masterFd);
    // Everything that can fail comes before the reader takes ownership of readerFd.
    const dest = paths.stdout ? openOutput(paths.stdout) : undefined;
    try {
      this.stdin = paths.stdin ? new StdinFifo(paths.stdin) : undefined;
    } catch (err) {
      dest?.destroy();
      throw err;
    }
    this.master = masterFd;
    this.reader = new TtyReadStream(readerFd);
    this.reader.on('error', () => { /* EIO: the slave side is closed */ });
    this.done = dest
      ? copy(this.reader, dest)
      : new Promise<void>((resolve) => {
        this.reader.on('close', () => resolve());
        this.reader.resume();
      });
    this.stdin?.reader.on('data', (chunk: Buffer) => this.enqueue(chunk));
  }

  get outputDone(): Promise<void> {
    return this.done;
  }

  private enqueue(chunk: Buffer): void {
    this.pending.push(chunk);
    if (!this.writing) this.flush();
  }

  /** Writes queued input to the non-blocking master; EAGAIN (pty input full) backs off a little. */
  private flush(): void {
    const fd = this.master;
    const chunk = this.pending[0];
    if (fd === undefined || !chunk) {
      this.writing = false;
      this.stdin?.reader.resume();
      return;
    }
    this.writing = true;
    this.stdin?.reader.pause();
    fsWrite(fd, chunk, (err, written) => {
      if (err) {
        if (err.code === 'EAGAIN') {
          setTimeout(() => this.flush(), 10);
          return;
        }
        this.pending = [];
        this.writing = false;
        return;
      }
      if (written < chunk.length) this.pending[0] = chunk.subarray(written);
      else this.pending.shift();
      this.flush();
    });
  }

  closeStdin(): void {
    this.stdin?.release();
  }

  resize(width: number, height: number): void {
    if (this.master === undefined) return;
    const ws = Buffer.alloc(8);
    ws.writeUInt16LE(height, 0);
    ws.writeUInt16LE(width, 2);
    ioctl(this.master, TIOCSWINSZ, ws);
  }

  close(): void {
    this.stdin?.close();
    this.reader.destroy();
    if (this.master !== undefined) {
      const fd = this.master;
      this.master = undefined;
      this.pending = [];
      try {
        fstatSync(fd);
        closeSync(fd);
      } catch { /* already closed */ }
    }
  }
}

/** IO for a process with no stdio at all. */
export class NullIO implements ProcessIO {
  readonly outputDone = Promise.resolve();
  closeStdin(): void {}
  resize(): void {}
  close(): void {}
}

export function isNullStdio(paths: StdioPaths): boolean {
  return !paths.stdin && !paths.stdout && !paths.stderr && !paths.terminal;
}
