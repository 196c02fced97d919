/**
 * Running a shim binary: the `start` action (the shim daemonises, prints its ttrpc address
 * and exits) and the `delete` action (cleanup after a shim is gone; prints a marshalled
 * DeleteResponse). Argument order, working directory, environment and stdin are exactly
 * containerd 1.6's, so any v2 shim behaves under berthd as it does under containerd.
 */
import { spawn } from 'node:child_process';
import { close, constants, openSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { Any } from '../../../api/gen/google/protobuf/any.js';
import { DeadlineExceededError, messageOf } from '../../../core/errdefs/errdefs.js';
import type { AnyMessage } from '../../../core/events/exchange.js';
import type { Logger } from '../../../core/log/logger.js';
import { spawnAvailable, spawnProcess } from '../../../core/sys/spawn.js';
import type { Bundle } from './bundle.js';

export interface ShimBinaryConfig {
  /** Resolved shim binary path. */
  runtime: string;
  /** The daemon's gRPC address (passed as -address). */
  address: string;
  /** The daemon's ttrpc address (TTRPC_ADDRESS), where shims forward events. */
  ttrpcAddress: string;
  /** The daemon executable (-publish-binary). */
  executable: string;
  schedCore: boolean;
  debug: boolean;
}

export interface ShimDeleteResult {
  pid: number;
  exitStatus: number;
  exitedAt: Date | undefined;
}

function shimEnv(cfg: ShimBinaryConfig): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, GOMAXPROCS: '2', TTRPC_ADDRESS: cfg.ttrpcAddress };
  if (cfg.schedCore) env.SCHED_CORE = '1';
  return env;
}

function commonArgs(cfg: ShimBinaryConfig, namespace: string): string[] {
  return ['-namespace', namespace, '-address', cfg.address, '-publish-binary', cfg.executable];
}

/** The runtime options as the shim reads them from stdin: a marshalled google.protobuf.Any. */
function marshalOptions(a: AnyMessage): Buffer {
  return Buffer.from(Any.encode({ typeUrl: a.typeUrl, value: Buffer.from(a.value.buffer, a.value.byteOffset, a.value.byteLength) }).finish());
}

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
}

type RunOptions = { cwd: string; env: NodeJS.ProcessEnv; stdin?: Buffer; timeoutMs?: number; combined: boolean };

/**
 * Runs the shim binary in a session of its own. posix_spawn where available (see
 * core/sys/spawn.ts: a fork of the daemon costs milliseconds of its event loop per `ctr run`),
 * child_process otherwise.
 */
async function run(file: string, args: string[], opts: RunOptions): Promise<RunResult> {
  if (!spawnAvailable()) return runForked(file, args, opts);
  const r = await spawnProcess(file, args, opts);
  if (r.timedOut) throw new DeadlineExceededError(`${file} ${args[args.length - 1]}: context deadline exceeded`);
  return r;
}

function runForked(file: string, args: string[], opts: RunOptions): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: opts.cwd,
      env: opts.env,
      // A process group of its own (setsid): terminal signals sent to the daemon's group must
      // not reach shims, which outlive the daemon.
      detached: true,
      stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => (opts.combined ? out : err).push(b));
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    if (opts.timeoutMs) {
      timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, opts.timeoutMs);
    }
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) return reject(new DeadlineExceededError(`${file} ${args[args.length - 1]}: context deadline exceeded`));
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err) });
    });
    if (opts.stdin) {
      child.stdin!.on('error', () => undefined);
      child.stdin!.end(opts.stdin);
    }
  });
}

const exitText = (r: RunResult) => (r.signal ? `signal: ${r.signal.toLowerCase().replace(/^sig/, '')}` : `exit status ${r.code}`);

/**
 * The bundle's `log` FIFO, copied to the daemon's stderr, read through libuv (no thread blocks
 * on it). Two descriptors: a read-write one that keeps the pipe alive while shims reopen it,
 * and a read-only one the reader uses. Releasing a pipe wakes its other end, and the closing
 * thread can lose the CPU to it for milliseconds: the last descriptor is closed on the thread
 * pool, not on the event loop.
 */
export class ShimLog {
  private socket: Socket | undefined;
  private keepFd: number | undefined;

  static async open(bundle: Bundle): Promise<ShimLog> {
    const path = join(bundle.path, 'log');
    const { mknod, S_IFIFO } = await import('../../../core/sys/fsx.js');
    try {
      mknod(path, S_IFIFO | 0o700);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const log = new ShimLog();
    log.keepFd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
    const socket = new Socket({ fd: openSync(path, constants.O_RDONLY | constants.O_NONBLOCK), readable: true, writable: false });
    socket.on('error', () => undefined);
    socket.on('data', (b: Buffer) => process.stderr.write(b));
    log.socket = socket;
    return log;
  }

  close(): void {
    this.socket?.destroy();
    this.socket = undefined;
    if (this.keepFd !== undefined) close(this.keepFd, () => undefined);
    this.keepFd = undefined;
  }
}

/** Runs `<shim> … -id ID [-debug] start` in the bundle; resolves the address it printed. */
export async function startShim(cfg: ShimBinaryConfig, bundle: Bundle, options: AnyMessage | undefined): Promise<string> {
  const args = [...commonArgs(cfg, bundle.namespace), '-id', bundle.id];
  if (cfg.debug) args.push('-debug');
  args.push('start');
  // Written while the shim starts (it is only read when the daemon reloads tasks); a failed
  // start removes the bundle with it.
  const recorded = writeFile(join(bundle.path, 'shim-binary-path'), cfg.runtime, { mode: 0o600 });
  let r: RunResult;
  try {
    r = await run(cfg.runtime, args, {
      cwd: bundle.path,
      env: shimEnv(cfg),
      stdin: options ? marshalOptions(options) : undefined,
      combined: true,
    });
  } catch (err) {
    await recorded.catch(() => undefined);
    throw err;
  }
  const text = r.stdout.toString('utf8');
  if (r.code !== 0) {
    await recorded.catch(() => undefined);
    throw new Error(`${text}: ${exitText(r)}`);
  }
  await recorded;
  return text.trim();
}

/**
 * Runs `<shim> … -id ID -bundle PATH delete`: the shim cleans up after a dead instance of
 * itself (runc: deletes the container, unmounts the rootfs) and reports how it ended.
 */
export async function deleteShim(cfg: ShimBinaryConfig, bundle: Bundle, log: Logger, timeoutMs: number): Promise<ShimDeleteResult> {
  const args = [...commonArgs(cfg, bundle.namespace), '-id', bundle.id, '-bundle', bundle.path, 'delete'];
  let r: RunResult;
  try {
    r = await run(cfg.runtime, args, { cwd: bundle.path, env: shimEnv(cfg), timeoutMs, combined: false });
  } catch (err) {
    // A bundle that is already gone cannot be a cwd; run from the state root instead.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    r = await run(cfg.runtime, args, { cwd: '/', env: shimEnv(cfg), timeoutMs, combined: false });
  }
  if (r.code !== 0) {
    log.error('failed to delete', { id: bundle.id, error: exitText(r) });
    throw new Error(`${r.stderr.toString('utf8')}: ${exitText(r)}`);
  }
  const warnings = r.stderr.toString('utf8');
  if (warnings) log.warn(`cleanup warnings ${warnings}`);
  const { DeleteResponse } = await import('../../../api/gen/runtime/v2/task/shim.js');
  try {
    const resp = DeleteResponse.decode(r.stdout);
    return { pid: resp.pid, exitStatus: resp.exitStatus, exitedAt: resp.exitedAt };
  } catch (err) {
    throw new Error(`decode delete response: ${messageOf(err)}`, { cause: err });
  }
}
