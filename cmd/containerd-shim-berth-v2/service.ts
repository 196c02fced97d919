/**
 * `containerd.task.v2.Task`, served by the long-lived shim over ttrpc: the container(s) of this
 * shim, their processes, exit handling and task events.
 *
 * Event order. Exits are detected asynchronously (reaper.ts) and may be seen while `runc start`
 * or `runc exec` is still running — a container that runs `echo` can be gone before the start
 * call returns. Like the runc shim (which holds a lock around Start for this), exit handling
 * waits while any Start is in flight, so /tasks/start (or /tasks/exec-started) is always queued
 * before that process's /tasks/exit. Exits are handled one at a time in detection order; the
 * events are queued synchronously where the state changes, and the publisher keeps queue order.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused, TaskResumed, TaskStart } from '../../api/gen/events/task.js';
import type { Any } from '../../api/gen/google/protobuf/any.js';
import { ProcessDetails } from '../../api/gen/runc/options/oci.js';
import type { TaskService } from '../../api/gen/runtime/v2/task/shim.js';
import { Status as TaskStatus, type ProcessInfo } from '../../api/gen/types/task/task.js';
import type { HandlerContext, ServiceImplementation } from '../../api/ttrpc/index.js';
import { AlreadyExistsError, CanceledError, InvalidArgumentError, NotFoundError, NotImplementedError, messageOf } from '../../core/errdefs/errdefs.js';
import { loadCgroup, type Cgroup } from './cgroups.js';
import { Topics, type Publisher } from './events.js';
import type { Logger } from './log.js';
import { decodeOptions, writeBundleOptions } from './options.js';
import { ExecProcess, InitProcess, shouldKillAllOnExit, type Process, type Status } from './process.js';
import type { Reaper } from './reaper.js';
import { Runc } from './runc.js';
import type { ChildExit } from './libc.js';

type Impl = ServiceImplementation<typeof TaskService>;

const EMPTY = {};

export interface ShimServiceOptions {
  namespace: string;
  publisher: Publisher;
  reaper: Reaper;
  log: Logger;
  /** Called (once) when Shutdown decides the shim should exit. */
  onShutdown: () => void;
  /** Reported by Connect. */
  version?: string;
}

export class Container {
  readonly execs = new Map<string, ExecProcess>();
  cgroup: Cgroup | undefined;
  oomKills = 0;

  constructor(
    readonly id: string,
    readonly bundle: string,
    readonly init: InitProcess,
  ) {}

  process(execId: string): Process {
    if (!execId) return this.init;
    const exec = this.execs.get(execId);
    if (!exec) throw new NotFoundError(`process does not exist ${execId}`);
    return exec;
  }

  loadCgroup(): void {
    if (this.cgroup || this.init.pid <= 0) return;
    this.cgroup = loadCgroup(this.init.pid);
    this.oomKills = this.cgroup?.oomKills() ?? 0;
  }
}

const STATUS: Record<Status, TaskStatus> = {
  created: TaskStatus.CREATED,
  running: TaskStatus.RUNNING,
  pausing: TaskStatus.PAUSING,
  paused: TaskStatus.PAUSED,
  stopped: TaskStatus.STOPPED,
  deleted: TaskStatus.STOPPED,
};

export class ShimService implements Impl {
  readonly containers = new Map<string, Container>();
  private startsInFlight = 0;
  private startGate: Array<() => void> = [];
  private exitChain: Promise<void> = Promise.resolve();
  private shuttingDown = false;

  constructor(private readonly opts: ShimServiceOptions) {}

  private get log(): Logger {
    return this.opts.log;
  }

  private container(id: string): Container {
    const container = this.containers.get(id);
    if (!container) throw new NotFoundError('container not created');
    return container;
  }

  // ---- lifecycle -----------------------------------------------------------------------------

  async create(req: Parameters<Impl['create']>[0]): ReturnType<Impl['create']> {
    if (!req.id) throw new InvalidArgumentError('container id is required');
    if (this.containers.has(req.id)) throw new AlreadyExistsError(`container ${req.id}`);
    if (req.checkpoint) throw new NotImplementedError('restoring from a checkpoint is not supported by the berth shim');
    const options = decodeOptions(req.options);
    writeBundleOptions(req.bundle, options);

    let rootfs = '';
    if (req.rootfs.length > 0) {
      rootfs = join(req.bundle, 'rootfs');
      mkdirSync(rootfs, { recursive: true, mode: 0o711 });
      const { mountAll } = await import('../../core/mount/mount.js');
      try {
        await mountAll(req.rootfs.map((m) => ({ type: m.type, source: m.source, options: m.options })), rootfs);
      } catch (err) {
        throw new Error(`failed to mount rootfs component: ${messageOf(err)}`, { cause: err });
      }
    }

    const runc = new Runc({
      command: options.binaryName,
      root: options.root,
      namespace: this.opts.namespace,
      bundle: req.bundle,
      systemdCgroup: options.systemdCgroup,
      criuPath: options.criuPath,
    });
    const init = new InitProcess({
      id: req.id,
      bundle: req.bundle,
      runc,
      options,
      stdio: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
      rootfs,
      log: this.log.child({ id: req.id }),
    });
    try {
      await init.create();
    } catch (err) {
      if (rootfs) {
        const { unmountAll } = await import('../../core/mount/mount.js');
        await unmountAll(rootfs).catch((e: unknown) => this.log.warn('failed to cleanup rootfs mount', { error: e }));
      }
      throw err;
    }

    const container = new Container(req.id, req.bundle, init);
    this.containers.set(req.id, container);
    container.loadCgroup();
    this.opts.publisher.publish(Topics.create, 'containerd.events.TaskCreate', TaskCreate, {
      containerId: req.id,
      bundle: req.bundle,
      rootfs: req.rootfs,
      io: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
      checkpoint: req.checkpoint,
      pid: init.pid,
    });
    this.opts.reaper.watch(init.pid, (exit) => this.onExit(container, init, exit));
    return { pid: init.pid };
  }

  async start(req: Parameters<Impl['start']>[0]): ReturnType<Impl['start']> {
    const container = this.container(req.id);
    const process = container.process(req.execId);
    this.startsInFlight++;
    try {
      if (process instanceof InitProcess) {
        await process.start();
        container.loadCgroup();
        this.opts.publisher.publish(Topics.start, 'containerd.events.TaskStart', TaskStart, {
          containerId: container.id,
          pid: process.pid,
        });
      } else {
        const exec = process as ExecProcess;
        await exec.start();
        this.opts.publisher.publish(Topics.execStarted, 'containerd.events.TaskExecStarted', TaskExecStarted, {
          containerId: container.id,
          execId: exec.id,
          pid: exec.pid,
        });
        this.opts.reaper.watch(exec.pid, (exit) => this.onExit(container, exec, exit));
      }
      return { pid: process.pid };
    } finally {
      this.startsInFlight--;
      if (this.startsInFlight === 0) for (const open of this.startGate.splice(0)) open();
    }
  }

  async delete(req: Parameters<Impl['delete']>[0]): ReturnType<Impl['delete']> {
    const container = this.container(req.id);
    const process = container.process(req.execId);
    await process.delete();
    if (req.execId) {
      container.execs.delete(req.execId);
    } else {
      this.containers.delete(req.id);
      this.opts.publisher.publish(Topics.delete, 'containerd.events.TaskDelete', TaskDelete, {
        containerId: container.id,
        pid: process.pid,
        exitStatus: process.exitStatus,
        exitedAt: process.exitedAtOrZero,
        id: '',
      });
    }
    return { pid: process.pid, exitStatus: process.exitStatus, exitedAt: process.exitedAtOrZero };
  }

  async exec(req: Parameters<Impl['exec']>[0]): ReturnType<Impl['exec']> {
    const container = this.container(req.id);
    if (!req.execId) throw new InvalidArgumentError('exec id is required');
    if (container.execs.has(req.execId)) {
      throw new AlreadyExistsError(`id ${req.execId}`);
    }
    let spec: Record<string, unknown>;
    try {
      spec = JSON.parse(Buffer.from(req.spec?.value ?? []).toString() || '{}') as Record<string, unknown>;
    } catch (err) {
      throw new InvalidArgumentError(`exec spec: ${messageOf(err)}`);
    }
    const exec = container.init.newExec(
      req.execId,
      { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
      spec,
    );
    container.execs.set(req.execId, exec);
    this.opts.publisher.publish(Topics.execAdded, 'containerd.events.TaskExecAdded', TaskExecAdded, {
      containerId: container.id,
      execId: req.execId,
    });
    return EMPTY;
  }

  async kill(req: Parameters<Impl['kill']>[0]): ReturnType<Impl['kill']> {
    const process = this.container(req.id).process(req.execId);
    if (process instanceof InitProcess) await process.kill(req.signal, req.all);
    else await (process as ExecProcess).kill(req.signal);
    return EMPTY;
  }

  async pause(req: Parameters<Impl['pause']>[0]): ReturnType<Impl['pause']> {
    const container = this.container(req.id);
    await container.init.pause();
    this.opts.publisher.publish(Topics.paused, 'containerd.events.TaskPaused', TaskPaused, { containerId: container.id });
    return EMPTY;
  }

  async resume(req: Parameters<Impl['resume']>[0]): ReturnType<Impl['resume']> {
    const container = this.container(req.id);
    await container.init.resume();
    this.opts.publisher.publish(Topics.resumed, 'containerd.events.TaskResumed', TaskResumed, { containerId: container.id });
    return EMPTY;
  }

  async checkpoint(req: Parameters<Impl['checkpoint']>[0]): ReturnType<Impl['checkpoint']> {
    this.container(req.id);
    throw new NotImplementedError('checkpoint is not supported by the berth shim (io.containerd.berth.v2)');
  }

  async update(req: Parameters<Impl['update']>[0]): ReturnType<Impl['update']> {
    const container = this.container(req.id);
    await container.init.update(req.resources?.value ?? new Uint8Array());
    return EMPTY;
  }

  // ---- io ---------------------------------------------------------------------------------

  async resizePty(req: Parameters<Impl['resizePty']>[0]): ReturnType<Impl['resizePty']> {
    this.container(req.id).process(req.execId).resize(req.width, req.height);
    return EMPTY;
  }

  async closeIo(req: Parameters<Impl['closeIo']>[0]): ReturnType<Impl['closeIo']> {
    const process = this.container(req.id).process(req.execId);
    if (req.stdin) process.closeStdin();
    return EMPTY;
  }

  // ---- queries ----------------------------------------------------------------------------

  async state(req: Parameters<Impl['state']>[0]): ReturnType<Impl['state']> {
    const container = this.container(req.id);
    const process = container.process(req.execId);
    return {
      id: process.id,
      bundle: container.bundle,
      pid: process.pid,
      status: STATUS[process.status()],
      stdin: process.stdio.stdin,
      stdout: process.stdio.stdout,
      stderr: process.stdio.stderr,
      terminal: process.stdio.terminal,
      exitStatus: process.exitStatus,
      exitedAt: process.exitedAtOrZero,
      execId: req.execId,
    };
  }

  async pids(req: Parameters<Impl['pids']>[0]): ReturnType<Impl['pids']> {
    const container = this.container(req.id);
    let pids: number[];
    try {
      pids = await container.init.runc.ps(container.id);
    } catch (err) {
      throw await container.init.runtimeError(err, 'OCI runtime ps failed');
    }
    const processes: ProcessInfo[] = pids.map((pid) => {
      const exec = [...container.execs.values()].find((e) => e.pid === pid);
      const info: Any | undefined = exec
        ? { typeUrl: 'containerd.runc.v1.ProcessDetails', value: Buffer.from(ProcessDetails.encode({ execId: exec.id }).finish()) }
        : undefined;
      return { pid, info };
    });
    return { processes };
  }

  async wait(req: Parameters<Impl['wait']>[0], ctx: HandlerContext): ReturnType<Impl['wait']> {
    const process = this.container(req.id).process(req.execId);
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(new CanceledError('context canceled'));
      if (ctx.signal.aborted) return onAbort();
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      void process.exited.then(() => {
        ctx.signal.removeEventListener('abort', onAbort);
        resolve();
      });
    });
    return { exitStatus: process.exitStatus, exitedAt: process.exitedAtOrZero };
  }

  async stats(req: Parameters<Impl['stats']>[0]): ReturnType<Impl['stats']> {
    const container = this.container(req.id);
    container.loadCgroup();
    if (!container.cgroup) throw new NotFoundError('cgroup does not exist');
    return { stats: await container.cgroup.stats() };
  }

  async connect(req: Parameters<Impl['connect']>[0]): ReturnType<Impl['connect']> {
    return {
      shimPid: process.pid,
      taskPid: this.containers.get(req.id)?.init.pid ?? 0,
      version: this.opts.version ?? '',
    };
  }

  async shutdown(req: Parameters<Impl['shutdown']>[0]): ReturnType<Impl['shutdown']> {
    // A shim serving containers stays, unless told to go now.
    if (this.containers.size > 0 && !req.now) return EMPTY;
    if (!this.shuttingDown) {
      this.shuttingDown = true;
      // After this reply is on its way.
      setImmediate(() => this.opts.onShutdown());
    }
    return EMPTY;
  }

  // ---- exits --------------------------------------------------------------------------------

  private whenNoStartInFlight(): Promise<void> {
    if (this.startsInFlight === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.startGate.push(resolve));
  }

  /** Called by the reaper; queued so exits are handled one at a time, in detection order. */
  onExit(container: Container, process: Process, exit: ChildExit): void {
    this.exitChain = this.exitChain
      .then(() => this.whenNoStartInFlight())
      .then(() => this.handleExit(container, process, exit))
      .catch((err: unknown) => this.log.error('handling process exit failed', { id: container.id, pid: exit.pid, error: err }));
  }

  private async handleExit(container: Container, process: Process, exit: ChildExit): Promise<void> {
    this.log.debug('process exited', { id: container.id, exec: process === container.init ? '' : process.id, pid: exit.pid, status: exit.status });
    if (process instanceof InitProcess && shouldKillAllOnExit(container.bundle)) {
      try {
        await process.killAll();
      } catch (err) {
        this.log.error("failed to kill init's children", { id: container.id, error: err });
      }
    }
    process.setExited(exit.status);
    const live = process instanceof InitProcess
      ? this.containers.get(container.id) === container
      : this.containers.get(container.id) === container && container.execs.get(process.id) === process;
    if (!live) return;
    this.checkOom(container);
    this.opts.publisher.publish(Topics.exit, 'containerd.events.TaskExit', TaskExit, {
      containerId: container.id,
      id: process.id,
      pid: exit.pid,
      exitStatus: exit.status,
      exitedAt: process.exitedAtOrZero,
    });
  }

  /** Publishes /tasks/oom when the container's OOM-kill counter went up since last looked at. */
  private checkOom(container: Container): void {
    const kills = container.cgroup?.oomKills();
    if (kills === undefined || kills <= container.oomKills) return;
    container.oomKills = kills;
    this.opts.publisher.publish(Topics.oom, 'containerd.events.TaskOOM', TaskOOM, { containerId: container.id });
  }
}
