/**
 * A connected v2 shim and the task it runs, speaking containerd.task.v2.Task over ttrpc.
 * Each method is one ttrpc call (the same calls containerd makes); errors come back as
 * errdefs classes, and a closed connection reads as "not found" for state queries, as in
 * containerd, because a task whose shim is gone no longer exists.
 */
import { TtrpcClient, TtrpcClosedError, typedClient, type TypedClient } from '../../../api/ttrpc/index.js';
import { TaskService } from '../../../api/gen/runtime/v2/task/shim.js';
import { codeOf, InvalidArgumentError, messageOf, NotFoundError, RemoteError } from '../../../core/errdefs/errdefs.js';
import type { AnyMessage } from '../../../core/events/exchange.js';
import { validateIdentifier } from '../../../core/identifiers/identifiers.js';
import {
  processStateOf,
  ZERO_TIME,
  type CallOptions,
  type CreateOpts,
  type ExecOpts,
  type ExecProcess,
  type Exit,
  type ProcessInfo,
  type ProcessState,
  type Task,
} from '../../../core/runtime/runtime.js';
import type { Bundle } from './bundle.js';
import type { ShimLog } from './binary.js';

type Rpc = TypedClient<typeof TaskService>;

const anyOut = (a: AnyMessage | undefined) => (a ? { typeUrl: a.typeUrl, value: Buffer.from(a.value.buffer, a.value.byteOffset, a.value.byteLength) } : undefined);

/** Re-raises `err` with `prefix: ` in front of its message, keeping its status code. */
export function wrapError(prefix: string, err: unknown): Error {
  return new RemoteError(codeOf(err), `${prefix}: ${messageOf(err)}`);
}

const callOpts = (o?: CallOptions) => ({ signal: o?.signal, timeoutMs: o?.timeoutMs });

export class ShimConnection {
  readonly rpc: Rpc;
  /** Settles once the connection is gone and the close handler's cleanup finished. */
  closed: Promise<void>;
  private resolveClosed!: () => void;

  constructor(readonly bundle: Bundle, readonly client: TtrpcClient, readonly log: ShimLog | undefined) {
    this.rpc = typedClient(client, TaskService, { namespace: bundle.namespace });
    this.closed = new Promise((r) => (this.resolveClosed = r));
  }

  /** Called by the manager when its close handling (cleanup, events) is done. */
  markClosed(): void {
    this.log?.close();
    this.resolveClosed();
  }

  close(): void {
    this.client.close();
  }
}

class ShimProcess implements ExecProcess {
  constructor(readonly task: ShimTask, readonly id: string) {}

  async state(opts?: CallOptions): Promise<ProcessState> {
    try {
      return processStateOf(await this.task.rpc.state({ id: this.task.id, execId: this.id }, callOpts(opts)));
    } catch (err) {
      if (err instanceof TtrpcClosedError) throw new NotFoundError(`process ${this.id}`);
      throw err;
    }
  }

  async kill(signal: number, _all: boolean, opts?: CallOptions): Promise<void> {
    await this.task.rpc.kill({ id: this.task.id, execId: this.id, signal, all: false }, callOpts(opts));
  }

  async resizePty(width: number, height: number, opts?: CallOptions): Promise<void> {
    await this.task.rpc.resizePty({ id: this.task.id, execId: this.id, width, height }, callOpts(opts));
  }

  async closeIO(opts?: CallOptions): Promise<void> {
    await this.task.rpc.closeIo({ id: this.task.id, execId: this.id, stdin: true }, callOpts(opts));
  }

  async start(opts?: CallOptions): Promise<number> {
    return (await this.task.rpc.start({ id: this.task.id, execId: this.id }, callOpts(opts))).pid;
  }

  async wait(opts?: CallOptions): Promise<Exit> {
    const r = await this.task.rpc.wait({ id: this.task.id, execId: this.id }, callOpts(opts));
    return { pid: 0, status: r.exitStatus, timestamp: r.exitedAt ?? ZERO_TIME };
  }

  async delete(opts?: CallOptions): Promise<Exit> {
    const r = await this.task.rpc.delete({ id: this.task.id, execId: this.id }, callOpts(opts));
    return { pid: r.pid, status: r.exitStatus, timestamp: r.exitedAt ?? ZERO_TIME };
  }
}

export class ShimTask implements Task {
  /** The init pid from Task.Create or Task.Connect; saves a round trip per later query. */
  private knownPid: number | undefined;
  /** Runs once the init process has started (the manager starts the next spare shim then). */
  onStarted: (() => void) | undefined;

  constructor(readonly shim: ShimConnection) {}

  get id(): string {
    return this.shim.bundle.id;
  }

  get namespace(): string {
    return this.shim.bundle.namespace;
  }

  get rpc(): Rpc {
    return this.shim.rpc;
  }

  async create(opts: CreateOpts, call?: CallOptions): Promise<number> {
    const r = await this.rpc.create({
      id: this.id,
      bundle: this.shim.bundle.path,
      rootfs: opts.rootfs.map((m) => ({ type: m.type, source: m.source, target: '', options: [...m.options] })),
      terminal: opts.io.terminal,
      stdin: opts.io.stdin,
      stdout: opts.io.stdout,
      stderr: opts.io.stderr,
      checkpoint: opts.checkpoint,
      parentCheckpoint: '',
      options: anyOut(opts.taskOptions ?? opts.runtimeOptions),
    }, callOpts(call));
    if (r.pid) this.knownPid = r.pid;
    return r.pid;
  }

  async pid(opts?: CallOptions): Promise<number> {
    return this.knownPid ?? this.connect(opts);
  }

  /** Task.Connect: the shim's view of the task (used when reloading shims). */
  async connect(opts?: CallOptions): Promise<number> {
    const pid = (await this.rpc.connect({ id: this.id }, callOpts(opts))).taskPid;
    if (pid) this.knownPid = pid;
    return pid;
  }

  async state(opts?: CallOptions): Promise<ProcessState> {
    try {
      return processStateOf(await this.rpc.state({ id: this.id, execId: '' }, callOpts(opts)));
    } catch (err) {
      if (err instanceof TtrpcClosedError) throw new NotFoundError(`task ${this.id}`);
      throw err;
    }
  }

  async kill(signal: number, all: boolean, opts?: CallOptions): Promise<void> {
    await this.rpc.kill({ id: this.id, execId: '', signal, all }, callOpts(opts));
  }

  async resizePty(width: number, height: number, opts?: CallOptions): Promise<void> {
    await this.rpc.resizePty({ id: this.id, execId: '', width, height }, callOpts(opts));
  }

  async closeIO(opts?: CallOptions): Promise<void> {
    await this.rpc.closeIo({ id: this.id, execId: '', stdin: true }, callOpts(opts));
  }

  async start(opts?: CallOptions): Promise<number> {
    const pid = (await this.rpc.start({ id: this.id, execId: '' }, callOpts(opts))).pid;
    const started = this.onStarted;
    this.onStarted = undefined;
    started?.();
    return pid;
  }

  async wait(opts?: CallOptions): Promise<Exit> {
    const r = await this.rpc.wait({ id: this.id, execId: '' }, callOpts(opts));
    return { pid: 0, status: r.exitStatus, timestamp: r.exitedAt ?? ZERO_TIME };
  }

  async pause(opts?: CallOptions): Promise<void> {
    await this.rpc.pause({ id: this.id }, callOpts(opts));
  }

  async resume(opts?: CallOptions): Promise<void> {
    await this.rpc.resume({ id: this.id }, callOpts(opts));
  }

  async exec(execId: string, opts: ExecOpts, call?: CallOptions): Promise<ExecProcess> {
    try {
      validateIdentifier(execId);
    } catch (err) {
      throw new InvalidArgumentError(`invalid exec id ${execId}: ${messageOf(err).replace(/: invalid argument$/, '')}`);
    }
    await this.rpc.exec({
      id: this.id,
      execId,
      terminal: opts.io.terminal,
      stdin: opts.io.stdin,
      stdout: opts.io.stdout,
      stderr: opts.io.stderr,
      spec: anyOut(opts.spec),
    }, callOpts(call));
    return new ShimProcess(this, execId);
  }

  async pids(opts?: CallOptions): Promise<ProcessInfo[]> {
    const r = await this.rpc.pids({ id: this.id }, callOpts(opts));
    return r.processes.map((p) => ({ pid: p.pid, info: p.info }));
  }

  async checkpoint(path: string, options: AnyMessage | undefined, opts?: CallOptions): Promise<void> {
    await this.rpc.checkpoint({ id: this.id, path, options: anyOut(options) }, callOpts(opts));
  }

  async update(resources: AnyMessage | undefined, annotations: Record<string, string>, opts?: CallOptions): Promise<void> {
    await this.rpc.update({ id: this.id, resources: anyOut(resources), annotations }, callOpts(opts));
  }

  async stats(opts?: CallOptions): Promise<AnyMessage | undefined> {
    return (await this.rpc.stats({ id: this.id }, callOpts(opts))).stats;
  }

  async process(execId: string, opts?: CallOptions): Promise<ExecProcess> {
    const p = new ShimProcess(this, execId);
    await p.state(opts);
    return p;
  }

  /** Task.Delete for the init process; the manager handles shutdown and cleanup. */
  async deleteInit(opts?: CallOptions): Promise<Exit> {
    const r = await this.rpc.delete({ id: this.id, execId: '' }, callOpts(opts));
    return { pid: r.pid, status: r.exitStatus, timestamp: r.exitedAt ?? ZERO_TIME };
  }

  async shutdown(opts?: CallOptions): Promise<void> {
    try {
      await this.rpc.shutdown({ id: this.id, now: false }, callOpts(opts));
    } catch (err) {
      if (!(err instanceof TtrpcClosedError)) throw err;
    }
  }
}
