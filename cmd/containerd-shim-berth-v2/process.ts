/**
 * A container's processes: the init process (created and started by runc, the container's
 * lifetime) and exec'd processes (`runc exec --detach`). Both follow the state machines of
 * containerd's pkg/process: created → running ⇄ paused → stopped → deleted for init,
 * created → running → stopped → deleted for execs. State is tracked locally; runc is asked to
 * act, never polled for status. Errors for invalid transitions carry containerd's messages
 * (plain errors, i.e. UNKNOWN on the wire, as there).
 */
import { closeSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FailedPreconditionError, NotFoundError, messageOf } from '../../core/errdefs/errdefs.js';
import { pidfdOpen, pidfdSendSignal } from '../../core/sys/syscalls.js';
import { ConsoleSocket } from './console.js';
import { dupFd } from './libc.js';
import type { Logger } from './log.js';
import type { Options } from '../../api/gen/runc/options/oci.js';
import { RuncError, type Runc } from './runc.js';
import { ConsoleIO, NullIO, PipeIO, checkStdio, isNullStdio, type ProcessIO, type StdioPaths } from './stdio.js';

export const INIT_PID_FILE = 'init.pid';

/** Go's zero time.Time, which the runc shim reports as exited_at for processes still running. */
export const ZERO_TIME = new Date(-62_135_596_800_000);

export type Status = 'created' | 'running' | 'pausing' | 'paused' | 'stopped' | 'deleted';

/** Waiting for copied output before delete, as containerd does (2 s). */
const IO_DRAIN_TIMEOUT_MS = 2_000;

export abstract class Process {
  pid = 0;
  exitStatus = 0;
  exitedAt: Date | undefined;
  io: ProcessIO | undefined;
  protected state: Status = 'created';
  private resolveExited!: () => void;
  /** Settles when the process has exited (or, for an exec, when its start failed). */
  readonly exited: Promise<void> = new Promise<void>((resolve) => (this.resolveExited = resolve));

  constructor(
    /** The container id for init, the exec id for execs. */
    readonly id: string,
    readonly stdio: StdioPaths,
  ) {}

  abstract status(): Status;
  abstract start(): Promise<void>;
  abstract delete(): Promise<void>;

  /** Records the exit (idempotent) and wakes waiters. */
  setExited(status: number): void {
    if (this.state === 'stopped' || this.state === 'deleted') return;
    this.exitStatus = status;
    this.exitedAt = new Date();
    this.state = 'stopped';
    this.resolveExited();
  }

  /** Wakes waiters without an exit (a start that failed): containerd closes waitBlock then. */
  protected abandon(): void {
    this.resolveExited();
  }

  get exitedAtOrZero(): Date {
    return this.exitedAt ?? ZERO_TIME;
  }

  resize(width: number, height: number): void {
    this.io?.resize(width, height);
  }

  closeStdin(): void {
    this.io?.closeStdin();
  }

  /**
   * Refuses to delete what still runs (or is gone: NOT_FOUND naming it as `what`, "container"
   * or "process", as runc's shim words it), then waits for its output to drain.
   */
  protected async prepareDelete(what: string): Promise<void> {
    switch (this.status()) {
      case 'created':
      case 'stopped':
        break;
      case 'deleted':
        throw new NotFoundError(`${what} ${this.id}`);
      case 'paused':
      case 'pausing':
        throw new Error('cannot delete a paused process');
      default:
        throw new Error('cannot delete a running process');
    }
    await this.drainIO();
  }

  protected async drainIO(): Promise<void> {
    if (!this.io) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.io.outputDone,
      new Promise<void>((resolve) => (timer = setTimeout(resolve, IO_DRAIN_TIMEOUT_MS))),
    ]);
    clearTimeout(timer);
  }
}

/**
 * Sets up the IO for a process about to be created by runc: a console socket for a terminal,
 * pipes for plain stdio, nothing when no stream was requested.
 */
function prepareIO(stdio: StdioPaths): { pipes?: PipeIO; console?: ConsoleSocket } {
  checkStdio(stdio);
  if (stdio.terminal) return { console: new ConsoleSocket() };
  if (isNullStdio(stdio)) return {};
  return { pipes: new PipeIO(stdio) };
}

/** After runc returned: the pipes start copying, or the pty master is fetched and copied. */
async function finishIO(
  prepared: { pipes?: PipeIO; console?: ConsoleSocket },
  stdio: StdioPaths,
): Promise<ProcessIO> {
  if (prepared.pipes) {
    prepared.pipes.releaseChildEnds();
    prepared.pipes.start();
    return prepared.pipes;
  }
  if (prepared.console) {
    const { fd } = await prepared.console.receiveMaster();
    let readerFd: number | undefined;
    try {
      readerFd = dupFd(fd);
      return new ConsoleIO(fd, readerFd, stdio);
    } catch (err) {
      for (const open of [fd, readerFd]) {
        try {
          if (open !== undefined) closeSync(open);
        } catch { /* already closed */ }
      }
      throw err;
    }
  }
  return new NullIO();
}

async function readPidFile(path: string): Promise<number> {
  const text = (await readFile(path, 'utf8')).trim();
  const pid = Number(text);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`invalid pid ${JSON.stringify(text)} in ${path}`);
  return pid;
}

/** runc's kill failures mapped like containerd's checkKillError. */
function killError(err: unknown): Error {
  const message = messageOf(err);
  if (/process already finished|container not running|no such process/i.test(message) || (err as NodeJS.ErrnoException).code === 'ESRCH') {
    return new NotFoundError('process already finished', { cause: err });
  }
  if (message.includes('does not exist')) return new NotFoundError('no such container', { cause: err });
  return new Error(`unknown error after kill: ${message}`, { cause: err });
}

export interface InitConfig {
  id: string;
  bundle: string;
  runc: Runc;
  options: Options;
  stdio: StdioPaths;
  /** Mounted rootfs directory ('' when the bundle brought its own). */
  rootfs: string;
  log: Logger;
}

export class InitProcess extends Process {
  readonly bundle: string;
  readonly runc: Runc;
  private readonly options: Options;
  readonly rootfs: string;
  private readonly log: Logger;
  private pausing = false;

  constructor(config: InitConfig) {
    super(config.id, config.stdio);
    this.bundle = config.bundle;
    this.runc = config.runc;
    this.options = config.options;
    this.rootfs = config.rootfs;
    this.log = config.log;
  }

  status(): Status {
    return this.pausing ? 'pausing' : this.state;
  }

  /** containerd's runtimeError: prefer the last error runc logged over its exit status. */
  async runtimeError(err: unknown, what: string): Promise<Error> {
    const logged = await this.runc.lastError();
    if (logged) return new Error(`${what}: ${logged}`, { cause: err });
    return new Error(`${what}: ${messageOf(err)}`, { cause: err });
  }

  async create(): Promise<void> {
    const prepared = prepareIO(this.stdio);
    try {
      try {
        await this.runc.create(this.id, this.bundle, {
          pidFile: join(this.bundle, INIT_PID_FILE),
          consoleSocket: prepared.console?.path,
          noPivot: this.options.noPivotRoot,
          noNewKeyring: this.options.noNewKeyring,
          stdio: prepared.pipes?.childStdio,
        });
      } catch (err) {
        throw await this.runtimeError(err, 'OCI runtime create failed');
      }
      try {
        this.io = await finishIO(prepared, this.stdio);
      } catch (err) {
        throw new Error(`failed to start io copy: ${messageOf(err)}`, { cause: err });
      }
      this.pid = await readPidFile(join(this.bundle, INIT_PID_FILE)).catch((err: unknown) => {
        throw new Error(`failed to retrieve OCI runtime container pid: ${messageOf(err)}`, { cause: err });
      });
    } catch (err) {
      prepared.pipes?.close();
      this.io?.close();
      throw err;
    } finally {
      prepared.console?.close();
    }
  }

  async start(): Promise<void> {
    switch (this.status()) {
      case 'created':
        break;
      case 'running':
      case 'pausing':
        throw new Error('cannot start a running process');
      case 'paused':
        throw new Error('cannot start a paused process');
      default:
        throw new Error('cannot start a stopped process');
    }
    try {
      await this.runc.start(this.id);
    } catch (err) {
      throw await this.runtimeError(err, 'OCI runtime start failed');
    }
    if (this.state === 'created') this.state = 'running';
  }

  async kill(signal: number, all: boolean): Promise<void> {
    if (this.state === 'deleted') throw new NotFoundError('process already finished');
    try {
      await this.runc.kill(this.id, signal, all);
    } catch (err) {
      throw killError(err);
    }
  }

  /** SIGKILL to every process of the container (init exited without a private pid namespace). */
  async killAll(): Promise<void> {
    try {
      await this.runc.kill(this.id, 9, true);
    } catch (err) {
      throw await this.runtimeError(err, 'OCI runtime killall failed');
    }
  }

  async pause(): Promise<void> {
    switch (this.status()) {
      case 'running':
        break;
      case 'created':
        throw new Error('cannot pause task in created state');
      case 'paused':
      case 'pausing':
        throw new Error('cannot pause a paused container');
      default:
        throw new Error('cannot pause a stopped container');
    }
    this.pausing = true;
    try {
      await this.runc.pause(this.id);
    } catch (err) {
      throw await this.runtimeError(err, 'OCI runtime pause failed');
    } finally {
      this.pausing = false;
    }
    if (this.state === 'running') this.state = 'paused';
  }

  async resume(): Promise<void> {
    switch (this.status()) {
      case 'paused':
        break;
      case 'created':
        throw new Error('cannot resume task in created state');
      case 'running':
      case 'pausing':
        throw new Error('cannot resume a running process');
      default:
        throw new Error('cannot resume a stopped container');
    }
    try {
      await this.runc.resume(this.id);
    } catch (err) {
      throw await this.runtimeError(err, 'OCI runtime resume failed');
    }
    if (this.state === 'paused') this.state = 'running';
  }

  async update(resources: Uint8Array): Promise<void> {
    if (this.state === 'stopped' || this.state === 'deleted') throw new Error('cannot update a stopped container');
    try {
      JSON.parse(Buffer.from(resources).toString() || '{}');
    } catch (err) {
      throw new Error(`invalid resources: ${messageOf(err)}`, { cause: err });
    }
    try {
      await this.runc.update(this.id, resources);
    } catch (err) {
      throw await this.runtimeError(err, 'OCI runtime update failed');
    }
  }

  async delete(): Promise<void> {
    await this.prepareDelete('container');
    let failure: Error | undefined;
    try {
      await this.runc.delete(this.id);
    } catch (err) {
      // Already gone from runc (e.g. removed by hand): the shim still owns pipes and mounts.
      if (!(err instanceof RuncError && err.output.includes('does not exist'))) {
        const logged = await this.runc.lastError();
        if (!(logged.includes('does not exist'))) failure = await this.runtimeError(err, 'failed to delete task');
      }
    }
    this.io?.close();
    if (this.rootfs) {
      try {
        const { unmountAll } = await import('../../core/mount/mount.js');
        await unmountAll(this.rootfs);
      } catch (err) {
        this.log.warn('failed to cleanup rootfs mount', { error: err });
        failure ??= new Error(`failed rootfs umount: ${messageOf(err)}`, { cause: err });
      }
    }
    if (failure) throw failure;
    this.state = 'deleted';
  }

  /** A new exec'd process (not started yet). */
  newExec(execId: string, stdio: StdioPaths, spec: Record<string, unknown>): ExecProcess {
    switch (this.status()) {
      case 'created':
      case 'running':
        break;
      case 'paused':
      case 'pausing':
        throw new Error('cannot exec in a paused state');
      default:
        throw new Error('cannot exec in a stopped state');
    }
    return new ExecProcess(execId, stdio, this, { ...spec, terminal: stdio.terminal });
  }
}

export class ExecProcess extends Process {
  private pidfd: number | undefined;

  constructor(
    id: string,
    stdio: StdioPaths,
    readonly parent: InitProcess,
    private readonly spec: Record<string, unknown>,
  ) {
    super(id, stdio);
  }

  status(): Status {
    const parent = this.parent.status();
    if (parent === 'paused' || parent === 'pausing') return parent;
    return this.state;
  }

  private get pidFile(): string {
    return join(this.parent.bundle, `${this.id}.pid`);
  }

  async start(): Promise<void> {
    switch (this.state) {
      case 'created':
        break;
      case 'running':
        throw new Error('cannot start a running process');
      default:
        throw new Error('cannot start a stopped process');
    }
    const specDir = join(this.parent.bundle, '.exec');
    mkdirSync(specDir, { recursive: true, mode: 0o700 });
    const processFile = join(specDir, `${this.id}.json`);
    writeFileSync(processFile, JSON.stringify(this.spec), { mode: 0o600 });
    const prepared = prepareIO(this.stdio);
    try {
      try {
        await this.parent.runc.exec(this.parent.id, {
          pidFile: this.pidFile,
          processFile,
          consoleSocket: prepared.console?.path,
          stdio: prepared.pipes?.childStdio,
        });
      } catch (err) {
        this.abandon();
        throw await this.parent.runtimeError(err, 'OCI runtime exec failed');
      }
      try {
        this.io = await finishIO(prepared, this.stdio);
      } catch (err) {
        throw new Error(`failed to start io copy: ${messageOf(err)}`, { cause: err });
      }
      this.pid = await readPidFile(this.pidFile).catch((err: unknown) => {
        throw new Error(`failed to retrieve OCI runtime exec pid: ${messageOf(err)}`, { cause: err });
      });
    } catch (err) {
      prepared.pipes?.close();
      this.io?.close();
      throw err;
    } finally {
      prepared.console?.close();
      rmSync(processFile, { force: true });
    }
    try {
      this.pidfd = pidfdOpen(this.pid);
    } catch {
      // Already reaped or not pidfd-capable: kill falls back to the pid while it is unreaped.
    }
    if (this.state === 'created') this.state = 'running';
  }

  override setExited(status: number): void {
    super.setExited(status);
    this.closePidfd();
  }

  async kill(signal: number): Promise<void> {
    if (this.pid === 0) throw new FailedPreconditionError('process not created');
    if (this.exitedAt) throw new NotFoundError('process already finished');
    try {
      if (this.pidfd !== undefined) pidfdSendSignal(this.pidfd, signal);
      else process.kill(this.pid, signal);
    } catch (err) {
      const mapped = killError(err);
      throw mapped instanceof NotFoundError ? new NotFoundError(`exec kill error: ${mapped.message}`, { cause: err }) : mapped;
    }
  }

  async delete(): Promise<void> {
    await this.prepareDelete('process');
    this.io?.close();
    this.closePidfd();
    rmSync(this.pidFile, { force: true });
    this.state = 'deleted';
  }

  private closePidfd(): void {
    if (this.pidfd === undefined) return;
    try {
      closeSync(this.pidfd);
    } catch { /* already closed */ }
    this.pidfd = undefined;
  }
}

/**
 * containerd's ShouldKillAllOnExit: without a private pid namespace, the init's exit does not
 * take the other processes down with it, so the shim kills them.
 */
export function shouldKillAllOnExit(bundle: string): boolean {
  try {
    const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
      linux?: { namespaces?: Array<{ type?: string; path?: string }> };
    };
    return !(spec.linux?.namespaces ?? []).some((ns) => ns.type === 'pid' && !ns.path);
  } catch {
    return true;
  }
}
