/**
 * Runs a short-lived helper program (a shim's `start` or `delete` action) with posix_spawn(3)
 * instead of Node's child_process.
 *
 * Node forks: fork(2) copies the page tables of the whole daemon, which blocks the event loop
 * for 1–3 ms per child depending on how much memory the daemon has touched, and a
 * `ctr run` starts one shim. glibc's posix_spawn uses clone(CLONE_VM | CLONE_VFORK): the
 * child borrows the parent's memory until it execs, so the cost no longer grows with the
 * daemon (0.15 ms here). Everything the child needs is set up by posix_spawn's own file and
 * attribute actions: stdio, working directory, a session of its own, default signal
 * dispositions and an empty signal mask (Node ignores SIGPIPE, and an ignored signal would
 * otherwise stay ignored across exec).
 *
 * The child is reaped with waitpid(2) on a thread-pool thread once its output has ended;
 * libuv only ever waits for the pids it spawned itself, so it never takes this status.
 * Where the FFI is unavailable the caller falls back to child_process (see `spawnAvailable`).
 */
import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import { syscallError } from './errno.js';
import { openLibc } from './syscalls.js';

type Koffi = typeof import('koffi');
type Fn = ((...args: unknown[]) => number) & { async: (...args: unknown[]) => void };

interface SpawnLib {
  koffi: Koffi;
  spawnp: Fn;
  faInit: Fn;
  faDestroy: Fn;
  faDup2: Fn;
  faOpen: Fn;
  faChdir: Fn;
  attrInit: Fn;
  attrDestroy: Fn;
  attrFlags: Fn;
  attrSigDefault: Fn;
  attrSigMask: Fn;
  pipe2: Fn;
  waitpid: Fn;
}

// glibc's flag values (spawn.h).
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
const POSIX_SPAWN_SETSID = 0x80;
const O_CLOEXEC = 0o2000000;
/** Opaque glibc structures, allocated with room to spare (80, 336 and 128 bytes on x86-64). */
const FILE_ACTIONS_BYTES = 256;
const ATTR_BYTES = 512;
const SIGSET_BYTES = 128;

let lib: SpawnLib | null | undefined;

function load(): SpawnLib | null {
  if (lib !== undefined) return lib;
  lib = null;
  try {
    const { koffi, lib: handle } = openLibc();
    const fn = (decl: string) => handle.func(decl) as unknown as Fn;
    lib = {
      koffi,
      spawnp: fn('int posix_spawnp(_Out_ int *pid, const char *file, void *actions, void *attr, const char **argv, const char **envp)'),
      faInit: fn('int posix_spawn_file_actions_init(void *actions)'),
      faDestroy: fn('int posix_spawn_file_actions_destroy(void *actions)'),
      faDup2: fn('int posix_spawn_file_actions_adddup2(void *actions, int fd, int newfd)'),
      faOpen: fn('int posix_spawn_file_actions_addopen(void *actions, int fd, const char *path, int oflag, unsigned int mode)'),
      faChdir: fn('int posix_spawn_file_actions_addchdir_np(void *actions, const char *path)'),
      attrInit: fn('int posix_spawnattr_init(void *attr)'),
      attrDestroy: fn('int posix_spawnattr_destroy(void *attr)'),
      attrFlags: fn('int posix_spawnattr_setflags(void *attr, short flags)'),
      attrSigDefault: fn('int posix_spawnattr_setsigdefault(void *attr, const void *set)'),
      attrSigMask: fn('int posix_spawnattr_setsigmask(void *attr, const void *set)'),
      pipe2: fn('int pipe2(_Out_ int *fds, int flags)'),
      waitpid: fn('int waitpid(int pid, _Out_ int *status, int options)'),
    };
  } catch {
    lib = null;
  }
  return lib;
}

/** Whether posix_spawn is usable here (Linux with koffi and a libc that has addchdir_np). */
export function spawnAvailable(): boolean {
  return load() !== null;
}

export interface SpawnOptions {
  cwd?: string;
  env: NodeJS.ProcessEnv;
  /** Written to the child's stdin, which is then closed; /dev/null when absent. */
  stdin?: Buffer;
  /** stderr goes into `stdout` (one stream, in order) instead of its own buffer. */
  combined?: boolean;
  /** SIGKILL after this long; the result then says `timedOut`. */
  timeoutMs?: number;
}

export interface SpawnResult {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
  timedOut: boolean;
}

const signalNames = new Map<number, NodeJS.Signals>(
  Object.entries(osConstants.signals).map(([name, n]) => [n, name as NodeJS.Signals]),
);

function pipe(l: SpawnLib): [number, number] {
  const fds = [0, 0];
  l.koffi.errno(0);
  if (l.pipe2(fds, O_CLOEXEC) !== 0) throw syscallError(l.koffi.errno(), 'pipe2');
  return [fds[0]!, fds[1]!];
}

/** Drains a pipe's read end through libuv; resolves with everything read once it closes. */
function collect(fd: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const socket = new Socket({ fd, readable: true, writable: false });
    const chunks: Buffer[] = [];
    socket.on('data', (b: Buffer) => chunks.push(b));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

/**
 * Spawns `file` (looked up on PATH unless it contains a slash) in a new session and resolves
 * when it has exited and closed its output. Rejects only when the program could not be
 * started at all (e.g. ENOENT), like child_process's 'error' event.
 */
export async function spawnProcess(file: string, args: readonly string[], opts: SpawnOptions): Promise<SpawnResult> {
  const l = load();
  if (!l) throw new Error('posix_spawn is not available');
  const actions = Buffer.alloc(FILE_ACTIONS_BYTES);
  const attr = Buffer.alloc(ATTR_BYTES);
  // Every signal back to its default, glibc's internal real-time ones included (sigfillset
  // leaves those out, and an ignored disposition survives exec).
  const allSignals = Buffer.alloc(SIGSET_BYTES, 0xff);
  // Zero-filled: the empty set.
  const noSignals = Buffer.alloc(SIGSET_BYTES);
  const opened: number[] = [];
  const closeAll = (fds: number[]) => {
    for (const fd of fds.splice(0)) {
      try {
        closeSync(fd);
      } catch { /* already closed */ }
    }
  };
  let out: [number, number];
  let err: [number, number] | undefined;
  let input: [number, number] | undefined;
  const pidOut = [0];
  l.faInit(actions);
  l.attrInit(attr);
  try {
    out = pipe(l);
    opened.push(...out);
    if (!opts.combined) {
      err = pipe(l);
      opened.push(...err);
    }
    if (opts.stdin) {
      input = pipe(l);
      opened.push(...input);
      l.faDup2(actions, input[0], 0);
    } else {
      l.faOpen(actions, 0, '/dev/null', 0, 0);
    }
    l.faDup2(actions, out[1], 1);
    l.faDup2(actions, err ? err[1] : out[1], 2);
    if (opts.cwd) l.faChdir(actions, opts.cwd);
    l.attrSigDefault(attr, allSignals);
    l.attrSigMask(attr, noSignals);
    l.attrFlags(attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    const envp: (string | null)[] = [];
    for (const [k, v] of Object.entries(opts.env)) if (v !== undefined) envp.push(`${k}=${v}`);
    envp.push(null);
    // On a thread-pool thread: posix_spawn's vfork suspends the calling thread until the
    // child has exec'd, a millisecond or more for a large binary, which the event loop would
    // otherwise spend blocked. It returns the error number instead of setting errno.
    const rc = await new Promise<number>((resolve, reject) => {
      l.spawnp.async(pidOut, file, actions, attr, [file, ...args, null], envp, (e: unknown, ret: number) => (e ? reject(e) : resolve(ret)));
    });
    if (rc !== 0) throw syscallError(rc, 'spawn', file);
  } catch (e) {
    closeAll(opened);
    throw e;
  } finally {
    l.faDestroy(actions);
    l.attrDestroy(attr);
  }
  const pid = pidOut[0]!;
  // The child holds its own copies now; ours of its ends must go so EOF can arrive.
  closeAll([out[1], ...(err ? [err[1]] : []), ...(input ? [input[0]] : [])]);
  const stdoutDone = collect(out[0]);
  const stderrDone = err ? collect(err[0]) : Promise.resolve(Buffer.alloc(0));
  if (input && opts.stdin) {
    const sink = new Socket({ fd: input[1], readable: false, writable: true });
    sink.on('error', () => undefined);
    sink.end(opts.stdin);
  }
  let timedOut = false;
  const timer = opts.timeoutMs ? setTimeout(() => {
    timedOut = true;
    try {
      process.kill(pid, 'SIGKILL');
    } catch { /* already gone */ }
  }, opts.timeoutMs) : undefined;
  const [stdout, stderr] = await Promise.all([stdoutDone, stderrDone]);
  const status = await reap(l, pid);
  clearTimeout(timer);
  const signaled = status >= 0 && (status & 0x7f) !== 0;
  return {
    pid,
    code: status < 0 ? null : signaled ? null : (status >> 8) & 0xff,
    signal: signaled ? signalNames.get(status & 0x7f) ?? null : null,
    stdout,
    stderr,
    timedOut,
  };
}

const WNOHANG = 1;
const ECHILD = 10;

/**
 * The child's wait status. A blocking waitpid on a thread-pool thread (the child has normally
 * exited by now, having closed its output); should that call come back without the status
 * (interrupted), polling with WNOHANG on this thread takes over. -1 when the status is gone.
 */
async function reap(l: SpawnLib, pid: number): Promise<number> {
  const blocking = await new Promise<number>((resolve) => {
    const st = [0];
    l.waitpid.async(pid, st, 0, (e: unknown, ret: number) => resolve(e || ret !== pid ? -1 : st[0]!));
  });
  if (blocking !== -1) return blocking;
  for (;;) {
    const st = [0];
    l.koffi.errno(0);
    const ret = l.waitpid(pid, st, WNOHANG);
    if (ret === pid) return st[0]!;
    if (ret === -1 && l.koffi.errno() === ECHILD) return -1;
    await new Promise((r) => setTimeout(r, 10));
  }
}

