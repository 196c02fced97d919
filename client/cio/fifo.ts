/**
 * Client-side stdio for tasks, as containerd's cio does it: a fresh directory of FIFOs
 * (`<dir>/<rand>/<id>-stdin|stdout|stderr`) handed to the daemon by path, with this process
 * copying between them and its own stdio. Everything goes through libuv pipes, so no thread
 * blocks on a FIFO:
 * - stdout/stderr are opened for reading at once, together with a placeholder writer so
 *   the reader sees no EOF before the shim opens its end; `ready()` (after Tasks.Create, when
 *   the shim holds its ends) drops the placeholder, so EOF then means the process is done.
 * - stdin is opened read-write (an open that cannot fail for want of a reader).
 */
import { closeSync, constants, mkdirSync, openSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const DEFAULT_FIFO_DIR = '/run/berth/fifo';

export interface FifoSet {
  dir: string;
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

/** Creates `<base>/<random>/` (0700) and FIFO names for `id`; stderr is '' with a terminal. */
export async function newFifoSet(id: string, opts: { dir?: string; terminal?: boolean; stdin?: boolean } = {}): Promise<FifoSet> {
  const { mknod, S_IFIFO } = await import('../../core/sys/fsx.js');
  let base = opts.dir || DEFAULT_FIFO_DIR;
  try {
    mkdirSync(base, { recursive: true, mode: 0o700 });
  } catch {
    base = join(tmpdir(), 'berth-fifo');
    mkdirSync(base, { recursive: true, mode: 0o700 });
  }
  const dir = join(base, randomBytes(6).readUIntBE(0, 6).toString());
  mkdirSync(dir, { mode: 0o700 });
  const set: FifoSet = {
    dir,
    stdin: opts.stdin === false ? '' : join(dir, `${id}-stdin`),
    stdout: join(dir, `${id}-stdout`),
    stderr: opts.terminal ? '' : join(dir, `${id}-stderr`),
    terminal: !!opts.terminal,
  };
  for (const p of [set.stdin, set.stdout, set.stderr]) if (p) mknod(p, S_IFIFO | 0o700);
  return set;
}

export interface Streams {
  stdin?: NodeJS.ReadableStream;
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
}

/** Copies between a FifoSet and local streams. */
export class FifoIO {
  private readonly placeholders: number[] = [];
  private readonly sockets: Socket[] = [];
  private readonly done: Promise<void>[] = [];
  private stdinSocket: Socket | undefined;
  private isReady = false;
  private stdinEnded = false;
  /** Called when local stdin ends (ctr then closes the task's stdin with CloseIO). */
  onStdinEnd: (() => void) | undefined;

  private readonly detachStdin: () => void = () => undefined;

  constructor(readonly fifos: FifoSet, streams: Streams) {
    for (const [path, out] of [[fifos.stdout, streams.stdout], [fifos.stderr, streams.stderr]] as const) {
      if (!path) continue;
      const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
      this.placeholders.push(openSync(path, constants.O_WRONLY | constants.O_NONBLOCK));
      const sock = new Socket({ fd, readable: true, writable: false });
      this.sockets.push(sock);
      this.done.push(new Promise<void>((resolve) => {
        sock.on('data', (b: Buffer) => out?.write(b));
        sock.once('end', () => resolve());
        sock.once('close', () => resolve());
        sock.on('error', () => resolve());
      }));
    }
    if (fifos.stdin) {
      const fd = openSync(fifos.stdin, constants.O_RDWR | constants.O_NONBLOCK);
      const sock = new Socket({ fd, readable: false, writable: true });
      sock.on('error', () => undefined);
      this.stdinSocket = sock;
      const input = streams.stdin;
      if (input) {
        const onData = (b: Buffer | string) => sock.write(b);
        const onEnd = () => {
          this.stdinEnded = true;
          if (this.isReady) this.endStdin();
        };
        input.on('data', onData);
        input.once('end', onEnd);
        this.detachStdin = () => {
          input.off('data', onData);
          input.off('end', onEnd);
          // process.stdin would otherwise keep the event loop (and the CLI) alive.
          if (input === process.stdin) process.stdin.destroy();
          else input.pause();
        };
      }
    }
  }

  /** The shim has opened its ends (after Tasks.Create/Exec): EOF now means the process ended. */
  ready(): void {
    this.isReady = true;
    for (const fd of this.placeholders.splice(0)) closeSync(fd);
    if (this.stdinEnded) this.endStdin();
  }

  private endStdin(): void {
    this.stdinSocket?.end();
    this.onStdinEnd?.();
  }

  /** Resolves once stdout and stderr reached EOF (after ready()). */
  async wait(timeoutMs?: number): Promise<void> {
    const all = Promise.all(this.done).then(() => undefined);
    if (!timeoutMs) return all;
    await Promise.race([all, new Promise<void>((r) => setTimeout(r, timeoutMs).unref())]);
  }

  /**
   * Closes every FIFO and removes the directory — unless `keepFiles` (a detached task keeps
   * its FIFOs so that `tasks attach` can reopen them later, as with ctr).
   */
  close(keepFiles = false): void {
    for (const fd of this.placeholders.splice(0)) closeSync(fd);
    for (const s of this.sockets) s.destroy();
    this.stdinSocket?.destroy();
    this.detachStdin();
    if (!keepFiles && this.fifos.dir) rmSync(this.fifos.dir, { recursive: true, force: true });
  }
}
