/**
 * A runtime v1 task: one containerd-shim per container, spoken to over ttrpc as
 * containerd.runtime.linux.shim.v1.Shim. There is no exec_id on the wire: `id` names the
 * process (the container id for init, the exec id otherwise).
 *
 * Unlike v2, a v1 shim publishes only /tasks/exit (through `<daemon> publish`); the daemon
 * publishes the rest, so start, exec start, pause and resume publish here once the shim
 * confirmed them.
 */
import { typedClient, TtrpcClosedError, type TtrpcClient, type TypedClient } from '../../../api/ttrpc/index.js';
import { ShimService } from '../../../api/gen/runtime/v1/shim/shim.js';
import { InvalidArgumentError, messageOf, NotFoundError, NotImplementedError } from '../../../core/errdefs/errdefs.js';
import { packAny } from '../../../core/events/any.js';
import type { AnyMessage } from '../../../core/events/exchange.js';
import { validateIdentifier } from '../../../core/identifiers/identifiers.js';
import {
  processStateOf,
  ZERO_TIME,
  type CallOptions,
  type ExecOpts,
  type ExecProcess,
  type Exit,
  type ProcessInfo,
  type ProcessState,
  type Task,
} from '../../../core/runtime/runtime.js';
import type { V1Bundle } from './bundle.js';
import type { ShimOutput } from './launch.js';

export type ShimRpc = TypedClient<typeof ShimService>;

/** How a task reports what happened to it (the runtime's event exchange). */
export type Publish = (namespace: string, topic: string, event: AnyMessage) => void;

const callOpts = (o?: CallOptions) => ({ signal: o?.signal, timeoutMs: o?.timeoutMs });

const anyOut = (a: AnyMessage | undefined) =>
  (a ? { typeUrl: a.typeUrl, value: Buffer.from(a.value.buffer, a.value.byteOffset, a.value.byteLength) } : undefined);

type EventsModule = typeof import('../../../api/gen/events/task.js');
let eventsModule: Promise<EventsModule> | undefined;
const events = () => (eventsModule ??= import('../../../api/gen/events/task.js'));

/** The connection to one shim and what the daemon holds for it. */
export class ShimHandle {
  readonly rpc: ShimRpc;

  constructor(readonly client: TtrpcClient, namespace: string, readonly output: ShimOutput | undefined) {
    this.rpc = typedClient(client, ShimService, { namespace });
  }

  /** Drops the connection and the output readers; the shim process is not touched. */
  close(): void {
    this.client.close();
    this.output?.close();
  }
}

/** State of process `id`; a shim that is gone means the process is gone. */
async function stateOf(rpc: ShimRpc, id: string, what: string, opts?: CallOptions): Promise<ProcessState> {
  try {
    return processStateOf(await rpc.state({ id }, callOpts(opts)));
  } catch (err) {
    if (err instanceof TtrpcClosedError) throw new NotFoundError(`${what} ${id}`);
    throw err;
  }
}

class LinuxProcess implements ExecProcess {
  constructor(private readonly task: LinuxTask, readonly id: string) {}

  state(opts?: CallOptions): Promise<ProcessState> {
    return stateOf(this.task.rpc, this.id, 'process', opts);
  }

  async kill(signal: number, _all: boolean, opts?: CallOptions): Promise<void> {
    await this.task.rpc.kill({ id: this.id, signal, all: false }, callOpts(opts));
  }

  async resizePty(width: number, height: number, opts?: CallOptions): Promise<void> {
    await this.task.rpc.resizePty({ id: this.id, width, height }, callOpts(opts));
  }

  async closeIO(opts?: CallOptions): Promise<void> {
    await this.task.rpc.closeIo({ id: this.id, stdin: true }, callOpts(opts));
  }

  async start(opts?: CallOptions): Promise<number> {
    const r = await this.task.rpc.start({ id: this.id }, callOpts(opts));
    const ev = await events();
    this.task.emit('/tasks/exec-started', packAny('containerd.events.TaskExecStarted', ev.TaskExecStarted, {
      containerId: this.task.id, execId: this.id, pid: r.pid,
    }));
    return r.pid;
  }

  async wait(opts?: CallOptions): Promise<Exit> {
    const r = await this.task.rpc.wait({ id: this.id }, callOpts(opts));
    return { pid: 0, status: r.exitStatus, timestamp: r.exitedAt ?? ZERO_TIME };
  }

  async delete(opts?: CallOptions): Promise<Exit> {
    const r = await this.task.rpc.deleteProcess({ id: this.id }, callOpts(opts));
    return { pid: r.pid, status: r.exitStatus, timestamp: r.exitedAt ?? ZERO_TIME };
  }
}

export class LinuxTask implements Task {
  /** The init pid: from Create, then from Start (a reloaded task reads it from init.pid). */
  private initPid: number;
  /** Settles when the shim's /tasks/exit for the init process has reached the exchange. */
  readonly exitPublished: Promise<void>;
  private markExitPublished!: () => void;

  constructor(
    readonly bundle: V1Bundle,
    readonly shim: ShimHandle,
    pid: number,
    private readonly publish: Publish,
  ) {
    this.initPid = pid;
    this.exitPublished = new Promise((resolve) => (this.markExitPublished = resolve));
  }

  /** The runtime saw this task's init exit event go by. */
  noteExitPublished(): void {
    this.markExitPublished();
  }

  get id(): string {
    return this.bundle.id;
  }

  get namespace(): string {
    return this.bundle.namespace;
  }

  get rpc(): ShimRpc {
    return this.shim.rpc;
  }

  /** Publishes a task event in this task's namespace; a failure is not the caller's problem. */
  emit(topic: string, event: AnyMessage): void {
    try {
      this.publish(this.namespace, topic, event);
    } catch {
      // The exchange validated namespace and topic long before; nothing useful to report.
    }
  }

  async pid(): Promise<number> {
    return this.initPid;
  }

  state(opts?: CallOptions): Promise<ProcessState> {
    return stateOf(this.rpc, this.id, 'task', opts);
  }

  async kill(signal: number, all: boolean, opts?: CallOptions): Promise<void> {
    await this.rpc.kill({ id: this.id, signal, all }, callOpts(opts));
  }

  async resizePty(width: number, height: number, opts?: CallOptions): Promise<void> {
    await this.rpc.resizePty({ id: this.id, width, height }, callOpts(opts));
  }

  async closeIO(opts?: CallOptions): Promise<void> {
    await this.rpc.closeIo({ id: this.id, stdin: true }, callOpts(opts));
  }

  async start(opts?: CallOptions): Promise<number> {
    const r = await this.rpc.start({ id: this.id }, callOpts(opts));
    this.initPid = r.pid;
    const ev = await events();
    this.emit('/tasks/start', packAny('containerd.events.TaskStart', ev.TaskStart, { containerId: this.id, pid: r.pid }));
    return r.pid;
  }

  async wait(opts?: CallOptions): Promise<Exit> {
    const r = await this.rpc.wait({ id: this.id }, callOpts(opts));
    return { pid: 0, status: r.exitStatus, timestamp: r.exitedAt ?? ZERO_TIME };
  }

  async pause(opts?: CallOptions): Promise<void> {
    await this.rpc.pause({}, callOpts(opts));
    const ev = await events();
    this.emit('/tasks/paused', packAny('containerd.events.TaskPaused', ev.TaskPaused, { containerId: this.id }));
  }

  async resume(opts?: CallOptions): Promise<void> {
    await this.rpc.resume({}, callOpts(opts));
    const ev = await events();
    this.emit('/tasks/resumed', packAny('containerd.events.TaskResumed', ev.TaskResumed, { containerId: this.id }));
  }

  async exec(execId: string, opts: ExecOpts, call?: CallOptions): Promise<ExecProcess> {
    try {
      validateIdentifier(execId);
    } catch (err) {
      throw new InvalidArgumentError(`invalid exec id: ${messageOf(err).replace(/: invalid argument$/, '')}`);
    }
    await this.rpc.exec({
      id: execId,
      terminal: opts.io.terminal,
      stdin: opts.io.stdin,
      stdout: opts.io.stdout,
      stderr: opts.io.stderr,
      spec: anyOut(opts.spec),
    }, callOpts(call));
    return new LinuxProcess(this, execId);
  }

  async pids(opts?: CallOptions): Promise<ProcessInfo[]> {
    const r = await this.rpc.listPids({ id: this.id }, callOpts(opts));
    return r.processes.map((p) => ({ pid: p.pid, info: p.info }));
  }

  async checkpoint(): Promise<void> {
    throw new NotImplementedError('checkpointing tasks is not supported by berth (no CRIU integration)');
  }

  async update(resources: AnyMessage | undefined, _annotations: Record<string, string>, opts?: CallOptions): Promise<void> {
    // The v1 shim takes resources only; annotations have no field in its UpdateTaskRequest.
    await this.rpc.update({ resources: anyOut(resources) }, callOpts(opts));
  }

  async stats(): Promise<AnyMessage | undefined> {
    // containerd reads v1 task metrics from the task's cgroup itself; berth has no cgroup
    // reader, which reads like a task whose cgroup is gone (skipped by Tasks.Metrics).
    throw new NotFoundError('cgroup does not exist');
  }

  async process(execId: string, opts?: CallOptions): Promise<ExecProcess> {
    const p = new LinuxProcess(this, execId);
    await p.state(opts);
    return p;
  }

  /** Shim.Delete: removes the init process (runc delete) and reports how it ended. */
  async deleteInit(opts?: CallOptions): Promise<Exit> {
    const r = await this.rpc.delete({}, callOpts(opts));
    return { pid: r.pid, status: r.exitStatus, timestamp: r.exitedAt ?? ZERO_TIME };
  }

  /** The shim's own pid as it reports it. */
  async shimPid(opts?: CallOptions): Promise<number> {
    return (await this.rpc.shimInfo({}, callOpts(opts))).shimPid;
  }
}
