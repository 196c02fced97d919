/**
 * Reaping container processes without racing runc.
 *
 * The shim is a child subreaper, so container processes (init and execs) are re-parented to it
 * once the runc invocation that started them exits, and their exit statuses are ours to
 * collect. libuv only waits for the pids it spawned itself (one waitpid(pid) per handle), so
 * nothing else would ever reap them. A generic `waitpid(-1)` reaper, on the other hand, would
 * also collect the exits of the runc processes that libuv (execa/child_process) is waiting
 * for; libuv then never learns that runc finished and the call hangs. containerd avoids the
 * same race with its reaper's subscription lists.
 *
 * So this reaper calls `waitid(P_PID, pid, WEXITED|WNOHANG)` for the container pids it was told
 * about (read from runc's pid files) and for nothing else. It runs
 *  - on SIGCHLD: Node's signal handling (libuv) lets us listen next to libuv's own SIGCHLD
 *    handler, and the kernel sends SIGCHLD to a subreaper when an adopted child dies, and also
 *    when an already-dead child (a zombie) is re-parented to it;
 *  - right after a pid is registered, in case it died before we were listening;
 *  - from a slow safety timer while pids are watched, for a pid that is not (yet) our child
 *    (ECHILD) — its death would not raise SIGCHLD here, so we look for it going away.
 */
import { readFileSync } from 'node:fs';
import { reapPid, type ChildExit } from './libc.js';

export type ExitHandler = (exit: ChildExit) => void;

const SAFETY_INTERVAL_MS = 2_000;
/** Exit status reported for a process that vanished without us collecting its status. */
export const UNKNOWN_EXIT_STATUS = 255;

export interface ReaperOptions {
  /** Called for failures that cannot be returned to anyone (logged by the shim). */
  onError?: (err: unknown, pid: number) => void;
  /** Whether to hook SIGCHLD (tests can drive check() themselves). */
  listenForSignals?: boolean;
}

export class Reaper {
  private readonly watched = new Map<number, ExitHandler>();
  private timer: NodeJS.Timeout | undefined;
  private readonly onSignal = () => this.check();

  constructor(private readonly options: ReaperOptions = {}) {
    if (options.listenForSignals !== false) process.on('SIGCHLD', this.onSignal);
  }

  /** Starts watching `pid`; `onExit` runs once, with the exit status, when it is reaped. */
  watch(pid: number, onExit: ExitHandler): void {
    if (!Number.isInteger(pid) || pid <= 0) throw new RangeError(`invalid pid ${pid}`);
    this.watched.set(pid, onExit);
    this.armTimer();
    this.checkOne(pid);
  }

  /** Stops watching without reaping (the caller no longer cares about the exit). */
  unwatch(pid: number): void {
    this.watched.delete(pid);
    if (this.watched.size === 0) this.disarmTimer();
  }

  get size(): number {
    return this.watched.size;
  }

  /** Tries every watched pid once. */
  check(): void {
    for (const pid of [...this.watched.keys()]) this.checkOne(pid);
  }

  close(): void {
    process.off('SIGCHLD', this.onSignal);
    this.disarmTimer();
    this.watched.clear();
  }

  private checkOne(pid: number): void {
    const handler = this.watched.get(pid);
    if (!handler) return;
    let exit: ChildExit | null;
    try {
      exit = reapPid(pid);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ECHILD') {
        this.options.onError?.(err, pid);
        return;
      }
      // Not our child: still owned by its original parent (a zombie of runc is re-parented to
      // us, with a SIGCHLD, once runc exits), or reaped by someone else. Only when it has
      // vanished entirely is it reported, with a status nobody can know any more.
      if (!processGone(pid)) return;
      exit = { pid, status: UNKNOWN_EXIT_STATUS };
    }
    if (!exit) return;
    this.unwatch(pid);
    handler(exit);
  }

  private armTimer(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.check(), SAFETY_INTERVAL_MS);
    this.timer.unref();
  }

  private disarmTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** Whether no process (not even a zombie) has `pid` any more. */
function processGone(pid: number): boolean {
  try {
    readFileSync(`/proc/${pid}/stat`, 'latin1');
    return false;
  } catch {
    return true;
  }
}
