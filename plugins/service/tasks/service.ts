/**
 * The tasks service: resolves a request's container, picks its runtime (a v1 runtime when the
 * container names one, v2 otherwise), and drives the task through it. It publishes nothing
 * itself — v2 shims publish their own task events.
 */
import type { ContainerStore, Container } from '../../../core/containers/containers.js';
import { Code, InvalidArgumentError, isNotFound, messageOf, NotImplementedError, RemoteError } from '../../../core/errdefs/errdefs.js';
import { parseFilters } from '../../../core/filters/filters.js';
import type { Logger } from '../../../core/log/logger.js';
import type { Metadata } from '../../../core/metadata/metadata.js';
import type { Mount } from '../../../core/mount/types.js';
import { namespaceRequired, type RequestContext } from '../../../core/namespaces/namespaces.js';
import {
  TaskStatus,
  ZERO_TIME,
  type PlatformRuntime,
  type Process,
  type Task,
} from '../../../core/runtime/runtime.js';
import type { CreateTaskInput, DeleteResult, MetricView, ProcessView, TasksService } from '../../../core/runtime/tasks.js';

export interface TasksServiceDeps {
  metadata: Metadata;
  containers: ContainerStore;
  /** The v2 runtime, which runs every runtime name no other runtime claims. */
  v2: PlatformRuntime;
  /** Other runtimes by their id (io.containerd.runtime.v1.linux). */
  runtimes: ReadonlyMap<string, PlatformRuntime>;
  /** Timeout of a state query (io.containerd.timeout.task.state). */
  stateTimeoutMs: number;
  log: Logger;
}

/** containerd answers a missing task with this exact text (no errdefs suffix). */
const taskNotFound = (id: string) => new RemoteError(Code.NOT_FOUND, `task ${id} not found`);

export class LocalTasksService implements TasksService {
  constructor(private readonly d: TasksServiceDeps) {}

  private runtimeFor(name: string): PlatformRuntime {
    return this.d.runtimes.get(name) ?? this.d.v2;
  }

  private allRuntimes(): PlatformRuntime[] {
    return [...this.d.runtimes.values(), this.d.v2];
  }

  private container(ctx: RequestContext, id: string): Promise<Container> {
    return this.d.containers.get(ctx, id);
  }

  private async task(ctx: RequestContext, id: string): Promise<{ ns: string; container: Container; task: Task }> {
    const ns = namespaceRequired(ctx);
    const container = await this.container(ctx, id);
    try {
      return { ns, container, task: this.runtimeFor(container.runtime.name).get(ns, container.id) };
    } catch {
      throw taskNotFound(container.id);
    }
  }

  private async process(ctx: RequestContext, id: string, execId: string): Promise<Process> {
    const { task } = await this.task(ctx, id);
    return execId ? task.process(execId, { signal: ctx.signal }) : task;
  }

  private async rootfsFor(ctx: RequestContext, c: Container, requested: Mount[]): Promise<Mount[]> {
    if (requested.length || !c.snapshotKey) return requested;
    const sn = this.d.metadata.snapshotters.get(c.snapshotter);
    if (!sn) return requested;
    return sn.mounts(ctx, c.snapshotKey);
  }

  async create(ctx: RequestContext, req: CreateTaskInput): Promise<{ containerId: string; pid: number }> {
    const ns = namespaceRequired(ctx);
    const container = await this.container(ctx, req.containerId);
    if (req.checkpoint && req.checkpoint.digest) throw new NotImplementedError('restoring a task from a checkpoint is not supported');
    if (!container.spec) throw new InvalidArgumentError(`container ${container.id} has no spec`);
    if (container.runtime.name.startsWith('io.containerd.runtime.v1.')) {
      this.d.log.warn('runtime v1 is deprecated since containerd v1.4, consider using runtime v2');
    } else if (container.runtime.name === 'io.containerd.runc.v1') {
      this.d.log.warn('"io.containerd.runc.v1" is deprecated since containerd v1.4, consider using "io.containerd.runc.v2"');
    }
    const runtime = this.runtimeFor(container.runtime.name);
    let exists = true;
    try {
      runtime.get(ns, container.id);
    } catch {
      exists = false;
    }
    if (exists) throw new RemoteError(Code.ALREADY_EXISTS, `task ${container.id}: already exists`);
    const rootfs = await this.rootfsFor(ctx, container, req.rootfs);
    const task = await runtime.create(ns, container.id, {
      spec: container.spec,
      rootfs,
      io: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
      checkpoint: '',
      runtime: req.runtimePath || container.runtime.name,
      runtimeOptions: container.runtime.options,
      taskOptions: req.options,
    }, { signal: ctx.signal });
    let pid: number;
    try {
      pid = await task.pid();
    } catch (err) {
      throw new RemoteError(Code.UNKNOWN, `failed to get task pid: ${messageOf(err)}`);
    }
    return { containerId: container.id, pid };
  }

  async start(ctx: RequestContext, containerId: string, execId: string): Promise<{ pid: number }> {
    const p = await this.process(ctx, containerId, execId);
    // The shim's StartResponse carries the pid containerd reads back with a State call.
    const pid = await p.start({ signal: ctx.signal });
    if (pid) return { pid };
    return { pid: (await p.state({ signal: ctx.signal })).pid };
  }

  async delete(ctx: RequestContext, containerId: string): Promise<DeleteResult> {
    const ns = namespaceRequired(ctx);
    const container = await this.container(ctx, containerId);
    const runtime = this.runtimeFor(container.runtime.name);
    try {
      runtime.get(ns, container.id);
    } catch {
      throw taskNotFound(container.id);
    }
    const exit = await runtime.delete(ns, containerId, { signal: ctx.signal });
    return { id: '', pid: exit.pid, exitStatus: exit.status, exitedAt: exit.timestamp };
  }

  async deleteProcess(ctx: RequestContext, containerId: string, execId: string): Promise<DeleteResult> {
    const { task } = await this.task(ctx, containerId);
    const p = await task.process(execId, { signal: ctx.signal });
    const exit = await (p as import('../../../core/runtime/runtime.js').ExecProcess).delete({ signal: ctx.signal });
    return { id: execId, pid: exit.pid, exitStatus: exit.status, exitedAt: exit.timestamp };
  }

  /** Process state as Tasks.Get reports it; errors other than NOT_FOUND read as UNKNOWN. */
  private async view(p: Process): Promise<ProcessView> {
    let state;
    try {
      state = await p.state({ timeoutMs: this.d.stateTimeoutMs });
    } catch (err) {
      if (isNotFound(err)) throw err;
      this.d.log.error(`get state for ${p.id}`, { error: messageOf(err) });
      state = { pid: 0, status: TaskStatus.Unknown, stdin: '', stdout: '', stderr: '', terminal: false, exitStatus: 0, exitedAt: ZERO_TIME };
    }
    return {
      containerId: '',
      id: p.id,
      pid: state.pid,
      status: state.status,
      stdin: state.stdin,
      stdout: state.stdout,
      stderr: state.stderr,
      terminal: state.terminal,
      exitStatus: state.exitStatus,
      exitedAt: state.exitedAt,
    };
  }

  async get(ctx: RequestContext, containerId: string, execId: string): Promise<ProcessView> {
    return this.view(await this.process(ctx, containerId, execId));
  }

  async list(ctx: RequestContext): Promise<ProcessView[]> {
    const ns = namespaceRequired(ctx);
    const tasks = this.allRuntimes().flatMap((r) => r.tasks(ns));
    const views = await Promise.all(tasks.map((t) => this.view(t).catch((err) => {
      if (!isNotFound(err)) this.d.log.error('converting task to protobuf', { id: t.id, error: messageOf(err) });
      return undefined;
    })));
    return views.filter((v): v is ProcessView => v !== undefined);
  }

  async kill(ctx: RequestContext, containerId: string, execId: string, signal: number, all: boolean): Promise<void> {
    const p = await this.process(ctx, containerId, execId);
    await p.kill(signal, all, { signal: ctx.signal });
  }

  async exec(ctx: RequestContext, req: Parameters<TasksService['exec']>[1]): Promise<void> {
    if (!req.execId) throw new RemoteError(Code.INVALID_ARGUMENT, 'exec id cannot be empty');
    const { task } = await this.task(ctx, req.containerId);
    await task.exec(req.execId, {
      spec: req.spec,
      io: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
    }, { signal: ctx.signal });
  }

  async resizePty(ctx: RequestContext, containerId: string, execId: string, width: number, height: number): Promise<void> {
    const p = await this.process(ctx, containerId, execId);
    await p.resizePty(width, height, { signal: ctx.signal });
  }

  async closeIO(ctx: RequestContext, containerId: string, execId: string, stdin: boolean): Promise<void> {
    const p = await this.process(ctx, containerId, execId);
    if (stdin) await p.closeIO({ signal: ctx.signal });
  }

  async pause(ctx: RequestContext, containerId: string): Promise<void> {
    const { task } = await this.task(ctx, containerId);
    await task.pause({ signal: ctx.signal });
  }

  async resume(ctx: RequestContext, containerId: string): Promise<void> {
    const { task } = await this.task(ctx, containerId);
    await task.resume({ signal: ctx.signal });
  }

  async listPids(ctx: RequestContext, containerId: string) {
    const { task } = await this.task(ctx, containerId);
    return task.pids({ signal: ctx.signal });
  }

  async checkpoint(ctx: RequestContext, containerId: string): Promise<never> {
    await this.task(ctx, containerId);
    throw new NotImplementedError('checkpointing tasks is not supported by berth (no CRIU integration)');
  }

  async update(ctx: RequestContext, containerId: string, resources: Parameters<Task['update']>[0], annotations: Record<string, string>): Promise<void> {
    const { task } = await this.task(ctx, containerId);
    await task.update(resources, annotations, { signal: ctx.signal });
  }

  async metrics(ctx: RequestContext, filters: readonly string[]): Promise<MetricView[]> {
    const ns = namespaceRequired(ctx);
    const filter = parseFilters(filters);
    const tasks = this.allRuntimes().flatMap((r) => r.tasks(ns)).filter((t) => filter.match((path) => {
      if (path[0] === 'id') return { value: t.id, present: true };
      if (path[0] === 'namespace') return { value: t.namespace, present: true };
      return { value: '', present: false };
    }));
    const out = await Promise.all(tasks.map(async (t): Promise<MetricView | undefined> => {
      const collected = new Date();
      try {
        return { timestamp: collected, id: t.id, data: await t.stats({ signal: ctx.signal }) };
      } catch (err) {
        if (!isNotFound(err)) this.d.log.error(`collecting metrics for ${t.id}`, { error: messageOf(err) });
        return undefined;
      }
    }));
    return out.filter((m): m is MetricView => m !== undefined);
  }

  async wait(ctx: RequestContext, containerId: string, execId: string): Promise<{ exitStatus: number; exitedAt: Date }> {
    const p = await this.process(ctx, containerId, execId);
    const exit = await p.wait({ signal: ctx.signal });
    return { exitStatus: exit.status, exitedAt: exit.timestamp };
  }
}
