/**
 * Starting and stopping containerd-shim (runtime v1) processes.
 *
 * The daemon binds the shim's socket itself and passes the listener as fd 3; the shim runs in
 * the bundle dir, in a session of its own (it outlives the daemon), with GOMAXPROCS=2 and the
 * daemon's environment. Its stdout and stderr are the FIFOs shim.stdout.log/shim.stderr.log in
 * the work dir, which the daemon drains (into its own stdout/stderr with shim_debug, into
 * nothing otherwise) and reopens after a restart. The shim holds its ends read-write, so a
 * daemon that is gone never turns a log line into SIGPIPE.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, constants, openSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { TtrpcClient } from '../../../api/ttrpc/index.js';
import { socketPath } from '../../../api/ttrpc/address.js';
import { messageOf } from '../../../core/errdefs/errdefs.js';
import type { V1Bundle } from './bundle.js';
import { removeSocket, writeBundleFile } from './bundle.js';
import { closeDescriptor, listenUnixSocket } from './socket.js';

/** containerd dials shims for up to 100 s. */
export const DIAL_TIMEOUT_MS = 100_000;

const errnoOf = (err: unknown) => (err as NodeJS.ErrnoException).code;

/** The two FIFOs a shim writes its output to, drained by the daemon. */
export class ShimOutput {
  private readonly readers: Socket[] = [];

  private constructor(readonly workDir: string) {}

  static async open(workDir: string, copy: boolean): Promise<ShimOutput> {
    const out = new ShimOutput(workDir);
    try {
      out.drain(await ensureFifo(join(workDir, 'shim.stdout.log')), copy ? process.stdout : undefined);
      out.drain(await ensureFifo(join(workDir, 'shim.stderr.log')), copy ? process.stderr : undefined);
    } catch (err) {
      out.close();
      throw err;
    }
    return out;
  }

  /** Descriptors for the shim's stdout and stderr (the caller closes them after spawning). */
  shimEnds(): [number, number] {
    const stdout = openSync(join(this.workDir, 'shim.stdout.log'), constants.O_RDWR);
    try {
      return [stdout, openSync(join(this.workDir, 'shim.stderr.log'), constants.O_RDWR)];
    } catch (err) {
      closeSync(stdout);
      throw err;
    }
  }

  private drain(path: string, to: NodeJS.WritableStream | undefined): void {
    // Read-write: the pipe never sees its last reader go while the daemon runs. libuv polls
    // it, so no thread-pool thread sits in a blocking read.
    const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
    const reader = new Socket({ fd, readable: true, writable: false });
    reader.on('error', () => undefined);
    reader.on('data', (chunk: Buffer) => {
      if (to) to.write(chunk);
    });
    this.readers.push(reader);
  }

  close(): void {
    for (const r of this.readers.splice(0)) r.destroy();
  }
}

async function ensureFifo(path: string): Promise<string> {
  await mkdir(dirname(path), { recursive: true, mode: 0o711 });
  const { mknod, S_IFIFO } = await import('../../../core/sys/fsx.js');
  try {
    mknod(path, S_IFIFO | 0o700);
  } catch (err) {
    if (errnoOf(err) !== 'EEXIST') throw err;
  }
  return path;
}

/**
 * Which shim process a socket address belongs to. A shim that exits removes its socket file
 * only while it still owns the address: a new shim for the same task id may already have
 * bound it again.
 */
const socketOwners = new Map<string, number>();

/** Binds the shim socket (0600); the socket file of a dead shim is replaced. */
async function bindShimSocket(address: string): Promise<number> {
  const path = socketPath(address);
  const abstract = path.startsWith('\0');
  if (!abstract) await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const listen = () => {
    const fd = listenUnixSocket(path);
    if (abstract) return fd;
    try {
      chmodSync(path, 0o600);
    } catch (err) {
      closeDescriptor(fd);
      throw err;
    }
    return fd;
  };
  try {
    return listen();
  } catch (err) {
    if (errnoOf(err) !== 'EADDRINUSE') {
      throw new Error(`failed to listen to unix socket ${JSON.stringify(address)}: ${messageOf(err)}`, { cause: err });
    }
  }
  try {
    await removeSocket(address);
  } catch (err) {
    throw new Error(`remove already used socket: ${messageOf(err)}`, { cause: err });
  }
  return listen();
}

export interface ShimLaunch {
  /** The shim binary (name looked up in $PATH, or path). */
  binary: string;
  args: string[];
  bundle: V1Bundle;
  /** Where the shim will listen (`unix://…`). */
  address: string;
  /** CreateOptions.shim_cgroup ('' for none). */
  cgroup: string;
  /** Copy the shim's output to the daemon's stdout/stderr. */
  debug: boolean;
  /** Called once the shim process has exited (and been reaped); its socket file is gone. */
  onExit: () => void;
}

export interface LaunchedShim {
  pid: number;
  child: ChildProcess;
  output: ShimOutput;
  client: TtrpcClient;
}

/**
 * Starts a shim for `bundle` and connects to it. On failure nothing is left behind: the
 * process is killed, the socket file removed and the output FIFOs' readers closed.
 */
export async function launchShim(l: ShimLaunch): Promise<LaunchedShim> {
  let listener: number | undefined = await bindShimSocket(l.address);
  const dropListener = () => {
    if (listener !== undefined) closeDescriptor(listener);
    listener = undefined;
  };
  let output: ShimOutput | undefined;
  let child: ChildProcess | undefined;
  try {
    output = await ShimOutput.open(l.bundle.workDir, l.debug);
    const [stdout, stderr] = output.shimEnds();
    try {
      child = spawn(l.binary, l.args, {
        cwd: l.bundle.path,
        env: { ...process.env, GOMAXPROCS: '2' },
        // A session of its own: signals for the daemon's process group must not reach it.
        detached: true,
        stdio: ['ignore', stdout, stderr, listener],
      });
    } finally {
      closeSync(stdout);
      closeSync(stderr);
      // Only the shim may hold the listener: with a copy here, connecting to a shim that
      // already died would still succeed (into a backlog nobody accepts from).
      dropListener();
    }
    const started = child;
    if (started.pid === undefined) {
      const failure = await new Promise<Error>((resolve) => started.once('error', resolve));
      throw new Error(`failed to start shim: ${messageOf(failure)}`, { cause: failure });
    }
    started.on('error', () => undefined);
    const pid = started.pid;
    socketOwners.set(l.address, pid);
    started.once('exit', () => {
      if (socketOwners.get(l.address) === pid) {
        socketOwners.delete(l.address);
        void removeSocket(l.address).catch(() => undefined);
      }
      l.onExit();
    });
    // Shims outlive the daemon; their handles must not keep its event loop alive.
    started.unref();
    await writeBundleFile(l.bundle.path, 'address', l.address);
    await writeBundleFile(l.bundle.path, 'shim.pid', String(pid));
    if (l.cgroup) joinCgroup(pid, l.cgroup);
    adjustOomScore(pid);
    let client: TtrpcClient;
    try {
      client = await TtrpcClient.connect(l.address, { timeoutMs: DIAL_TIMEOUT_MS });
    } catch (err) {
      throw new Error(`failed to connect: ${messageOf(err)}`, { cause: err });
    }
    return { pid, child: started, output, client };
  } catch (err) {
    if (child?.pid !== undefined) {
      child.kill('SIGKILL');
      if (socketOwners.get(l.address) === child.pid) socketOwners.delete(l.address);
    }
    output?.close();
    await removeSocket(l.address).catch(() => undefined);
    throw err;
  } finally {
    dropListener();
  }
}

/** oom_score_adj of a shim = the daemon's + 1, so the kernel picks the shim before the daemon. */
function adjustOomScore(pid: number): void {
  let score: number;
  try {
    score = Number.parseInt(readFileSync('/proc/self/oom_score_adj', 'utf8').trim(), 10);
  } catch (err) {
    throw new Error(`get daemon OOM score: ${messageOf(err)}`, { cause: err });
  }
  try {
    writeFileSync(`/proc/${pid}/oom_score_adj`, String(Math.min(score + 1, 1000)));
  } catch (err) {
    throw new Error(`set shim OOM score: ${messageOf(err)}`, { cause: err });
  }
}

/** Moves `pid` into `cgroup` (a path relative to the cgroup mount(s)). */
function joinCgroup(pid: number, cgroup: string): void {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  const targets: string[] = [];
  for (const line of mounts) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fsType = line.slice(sep + 3).split(' ')[0];
    const mountpoint = line.split(' ')[4];
    if (!mountpoint) continue;
    if (fsType === 'cgroup2' && mountpoint === '/sys/fs/cgroup') {
      targets.splice(0, targets.length, mountpoint);
      break;
    }
    if (fsType === 'cgroup') targets.push(mountpoint);
  }
  let joined = 0;
  let lastErr: unknown;
  for (const mp of targets) {
    try {
      writeFileSync(join(mp, cgroup, 'cgroup.procs'), String(pid));
      joined++;
    } catch (err) {
      lastErr = err;
    }
  }
  if (joined === 0) throw new Error(`failed to join cgroup ${cgroup}: ${lastErr ? messageOf(lastErr) : 'no cgroup mounts'}`);
}

/** Whether `pid` has exited: no such process, or only its zombie is left. */
export function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if (errnoOf(err) === 'ESRCH') return true;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

/**
 * SIGKILLs a shim and waits (polling every 10 ms) until it is gone, up to `timeoutMs` or an
 * abort. Returns false when it was still there at the end.
 */
export async function killProcess(pid: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
  if (pid <= 0 || pid === process.pid) return true;
  try {
    process.kill(pid, 'SIGKILL');
  } catch (err) {
    if (errnoOf(err) !== 'ESRCH') throw err;
    return true;
  }
  const deadline = Date.now() + timeoutMs;
  while (!processGone(pid)) {
    if (Date.now() >= deadline || signal?.aborted) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}
