/**
 * The v2 task manager: starts a shim per task, keeps the live task list, tears shims down on
 * delete, cleans up after shims that die, and reconnects to running shims after a daemon
 * restart. Shims publish their own task events over ttrpc; the manager only publishes the
 * synthetic exit/delete pair for a task whose shim vanished while the task was still listed.
 */
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { TtrpcClient, TtrpcClosedError } from '../../../api/ttrpc/index.js';
import type { ContainerStore } from '../../../core/containers/containers.js';
import { AlreadyExistsError, isNotFound, messageOf, NotFoundError } from '../../../core/errdefs/errdefs.js';
import { packAny } from '../../../core/events/any.js';
import type { EventExchange } from '../../../core/events/exchange.js';
import type { Logger } from '../../../core/log/logger.js';
import type { CallOptions, CreateOpts, Exit, PlatformRuntime, Task } from '../../../core/runtime/runtime.js';
import { adoptBundle, bundleFor, deleteBundle, newBundle, type Bundle } from './bundle.js';
import { deleteShim, ShimLog, startShim, type ShimBinaryConfig } from './binary.js';
import type { RuntimeResolver } from './resolve.js';
import { ShimConnection, ShimTask, wrapError } from './shim.js';
import { optionsAllowSpare, SpareShims, SPARE_PREFIX, specAllowsSpare } from './spares.js';

export interface ManagerConfig {
  root: string;
  state: string;
  address: string;
  ttrpcAddress: string;
  executable: string;
  schedCore: boolean;
  debug: boolean;
  timeouts: { loadMs: number; cleanupMs: number; shutdownMs: number };
  /** Keep a shim started ahead of the next task (spares.ts). */
  spareShims: boolean;
  /** How long an unused spare shim lives. */
  spareIdleMs: number;
  containers: ContainerStore;
  events: EventExchange;
  resolver: RuntimeResolver;
  log: Logger;
}

/** How long to wait for a shim's socket to accept (containerd: 100 s). */
const DIAL_TIMEOUT_MS = 100_000;

const keyOf = (ns: string, id: string) => `${ns}\u0000${id}`;

export class TaskManager implements PlatformRuntime {
  readonly id = 'io.containerd.runtime.v2.task';
  private readonly live = new Map<string, ShimTask>();
  /** Cleanups (shim delete action, bundle removal) still running, by task key. */
  private readonly cleanups = new Map<string, Promise<void>>();
  /** Tasks whose shim deleted them on request: their shim only has to go, not be cleaned up after. */
  private readonly deletedCleanly = new WeakSet<ShimTask>();
  /** Tasks whose kind of shim a spare can stand in for: the shim binary to start it with. */
  private readonly spareKinds = new WeakMap<ShimTask, ShimBinaryConfig>();
  private closing = false;
  private readonly spares: SpareShims;

  constructor(private readonly cfg: ManagerConfig) {
    this.spares = new SpareShims(cfg.state, cfg.spareIdleMs, DIAL_TIMEOUT_MS, cfg.log);
  }

  async init(): Promise<void> {
    await mkdir(this.cfg.root, { recursive: true, mode: 0o711 });
    await mkdir(this.cfg.state, { recursive: true, mode: 0o711 });
    await this.loadExistingTasks();
  }

  /**
   * Loads what the first task needs (libc through koffi for mkfifo, the mount module) off the
   * request path, so the first `run` after a start is as fast as the next ones.
   */
  async warmUp(): Promise<void> {
    try {
      const { mknod, S_IFIFO } = await import('../../../core/sys/fsx.js');
      try {
        mknod(this.cfg.state, S_IFIFO | 0o700);
      } catch {
        // EEXIST: libc is loaded, which is all this was for.
      }
      await import('../../../core/mount/mount.js');
    } catch (err) {
      this.cfg.log.debug('warm-up failed', { error: messageOf(err) });
    }
  }

  // ---------------------------------------------------------------- PlatformRuntime

  async create(namespace: string, id: string, opts: CreateOpts, call?: CallOptions): Promise<Task> {
    const key = keyOf(namespace, id);
    if (this.live.has(key)) throw new AlreadyExistsError(`task ${id}`);
    // A previous task of the same id may still be tearing down its bundle.
    await this.cleanups.get(key);
    let task: ShimTask;
    let spareOf: ShimBinaryConfig | undefined;
    const t0 = performance.now();
    try {
      ({ task, spareOf } = await this.startShim(namespace, id, opts));
    } catch (err) {
      throw wrapError('failed to start shim', err);
    }
    this.live.set(key, task);
    const t1 = performance.now();
    try {
      await task.create(opts, call);
      if (this.cfg.log.debugEnabled) {
        this.cfg.log.debug('task created', { id, namespace, shimMs: +(t1 - t0).toFixed(2), createMs: +(performance.now() - t1).toFixed(2) });
      }
      if (spareOf) {
        this.spareKinds.set(task, spareOf);
        // The next task of this kind finds its shim started: the spare starts once this task's
        // own start (runc's create and start) is done, not competing with it for the CPU, and
        // in time for a client starting tasks one after the other (`run -d` in a loop).
        task.onStarted = () => this.refillAfter(task);
      }
    } catch (err) {
      this.live.delete(key);
      await task.deleteInit({ timeoutMs: this.cfg.timeouts.cleanupMs }).catch(() => undefined);
      await this.shutdownAndDisconnect(key, task);
      await task.shim.closed;
      throw wrapError('failed to create shim task', err);
    }
    return task;
  }

  get(namespace: string, id: string): Task {
    const t = this.live.get(keyOf(namespace, id));
    if (!t) throw new NotFoundError(`task ${id}`);
    return t;
  }

  tasks(namespace: string | undefined): Task[] {
    const out: Task[] = [];
    for (const t of this.live.values()) if (namespace === undefined || t.namespace === namespace) out.push(t);
    return out;
  }

  async delete(namespace: string, id: string, call?: CallOptions): Promise<Exit> {
    const key = keyOf(namespace, id);
    const task = this.live.get(key);
    if (!task) throw new NotFoundError(`task ${id}`);
    let exit: Exit;
    try {
      exit = await task.deleteInit(call);
    } catch (err) {
      // A shim that is gone, or lost the task, is torn down all the same; its close handler
      // reports the exit while the task is still listed.
      if (!(err instanceof TtrpcClosedError) && !isNotFound(err)) throw wrapError('failed to delete task', err);
      await this.shutdownAndDisconnect(key, task);
      await task.shim.closed;
      this.live.delete(key);
      throw wrapError('failed to delete task', err);
    }
    this.live.delete(key);
    // A task deleted without having started (or whose spare was taken since) leaves one too.
    this.refillAfter(task);
    // The shim deleted its task itself: nothing is left for its `delete` action to clean up, and
    // spawning it (a fork of this process) would cost every `ctr run --rm` for nothing.
    this.deletedCleanly.add(task);
    // Shutdown and the bundle removal finish after the reply; a new
    // task with this id waits for them (see create), and so does the daemon's close.
    void this.shutdownAndDisconnect(key, task);
    return exit;
  }

  /** Starts the spare for the next task of `task`'s kind, if a spare can stand in for its shim. */
  private refillAfter(task: ShimTask): void {
    const binary = this.spareKinds.get(task);
    if (binary) this.spares.refill(task.namespace, binary); // a no-op once the daemon closes
  }

  /** Task.Shutdown (the shim exits once it runs no task), then closes the connection. */
  private shutdownAndDisconnect(key: string, task: ShimTask): Promise<void> {
    const shutdown = task.shutdown({ timeoutMs: this.cfg.timeouts.shutdownMs }).catch((err) => {
      this.cfg.log.error('failed to shutdown shim task', { id: task.id, error: messageOf(err) });
    });
    const done = shutdown.then(() => {
      task.shim.close();
      return task.shim.closed;
    });
    this.cleanups.set(key, done);
    void done.then(() => {
      if (this.cleanups.get(key) === done) this.cleanups.delete(key);
    });
    return shutdown;
  }

  // ---------------------------------------------------------------- shims

  private binaryConfig(runtime: string): ShimBinaryConfig {
    return {
      runtime,
      address: this.cfg.address,
      ttrpcAddress: this.cfg.ttrpcAddress,
      executable: this.cfg.executable,
      schedCore: this.cfg.schedCore,
      debug: this.cfg.debug,
    };
  }

  /** The task's shim: a spare if one is ready; `spareOf` says which spare to start next, if any. */
  private async startShim(namespace: string, id: string, opts: CreateOpts): Promise<{ task: ShimTask; spareOf?: ShimBinaryConfig }> {
    const runtime = await this.cfg.resolver.resolve(opts.runtime).catch((err) => {
      throw wrapError('failed to resolve runtime path', err);
    });
    const binary = this.binaryConfig(runtime);
    const options = opts.taskOptions ?? opts.runtimeOptions;
    // `start` reads runtime options from stdin and group annotations from the spec: a task
    // whose options or spec would matter to it gets a shim of its own making.
    const spareable = this.cfg.spareShims && specAllowsSpare(opts.spec.value) && (await optionsAllowSpare(options));
    const spare = spareable ? await this.spares.take(namespace, binary) : undefined;
    if (spare) {
      try {
        const bundle = await adoptBundle(this.cfg.root, this.cfg.state, namespace, id, opts.spec.value, spare.bundle.path);
        return { task: this.attach(bundle, spare.client, spare.log, binary), spareOf: binary };
      } catch (err) {
        await this.spares.discard(spare);
        throw err;
      }
    }
    const bundle = await newBundle(this.cfg.root, this.cfg.state, namespace, id, opts.spec.value);
    let log: ShimLog | undefined;
    try {
      log = await ShimLog.open(bundle);
      const t0 = performance.now();
      const address = await startShim(binary, bundle, options).catch((err) => {
        throw wrapError('start failed', err);
      });
      const t1 = performance.now();
      const client = await TtrpcClient.connect(address, { timeoutMs: DIAL_TIMEOUT_MS });
      if (this.cfg.log.debugEnabled) {
        this.cfg.log.debug('shim started', { id, namespace, startMs: +(t1 - t0).toFixed(2), dialMs: +(performance.now() - t1).toFixed(2) });
      }
      return { task: this.attach(bundle, client, log, binary), spareOf: spareable ? binary : undefined };
    } catch (err) {
      log?.close();
      await deleteBundle(bundle).catch(() => undefined);
      throw err;
    }
  }

  /** Closes the shim connection; until its cleanup is done, a new task with this key waits. */
  private disconnect(key: string, task: ShimTask): void {
    const done = task.shim.closed;
    this.cleanups.set(key, done);
    void done.then(() => {
      if (this.cleanups.get(key) === done) this.cleanups.delete(key);
    });
    task.shim.close();
  }

  /** Wraps a connected client as a task and arranges cleanup for when the connection drops. */
  private attach(bundle: Bundle, client: TtrpcClient, log: ShimLog | undefined, binary: ShimBinaryConfig): ShimTask {
    const shim = new ShimConnection(bundle, client, log);
    const task = new ShimTask(shim);
    const key = keyOf(bundle.namespace, bundle.id);
    client.onClose(() => {
      if (this.closing) {
        // The daemon is stopping: shims keep running and are reloaded on the next start.
        shim.markClosed();
        return;
      }
      this.cfg.log.info('shim disconnected', { id: bundle.id, namespace: bundle.namespace });
      if (!this.cleanups.has(key)) {
        const done = shim.closed;
        this.cleanups.set(key, done);
        void done.then(() => {
          if (this.cleanups.get(key) === done) this.cleanups.delete(key);
        });
      }
      const cleanup = this.deletedCleanly.has(task)
        ? deleteBundle(bundle).catch((err) => this.cfg.log.error('failed to delete bundle', { id: bundle.id, error: messageOf(err) }))
        : this.cleanupAfterDeadShim(bundle, binary);
      void cleanup.finally(() => {
        if (this.live.get(key) === task) this.live.delete(key);
        shim.markClosed();
      });
    });
    return task;
  }

  /**
   * Runs the shim's delete action (which also removes the bundle) and, if the task is still
   * listed — its shim died under it — publishes its exit and deletion.
   */
  private async cleanupAfterDeadShim(bundle: Bundle, binary: ShimBinaryConfig): Promise<void> {
    const { id, namespace } = bundle;
    let result: { pid: number; exitStatus: number; exitedAt: Date | undefined } | undefined;
    try {
      result = await deleteShim(binary, bundle, this.cfg.log, this.cfg.timeouts.cleanupMs);
    } catch (err) {
      this.cfg.log.warn('failed to clean up after shim disconnected', { id, namespace, error: messageOf(err) });
    }
    try {
      await deleteBundle(bundle);
    } catch (err) {
      this.cfg.log.error('failed to delete bundle', { id, error: messageOf(err) });
    }
    if (!this.live.has(keyOf(namespace, id))) return;
    const pid = result?.pid ?? 0;
    const exitStatus = result ? result.exitStatus : 255;
    const exitedAt = result?.exitedAt ?? new Date();
    const ev = await import('../../../api/gen/events/task.js');
    try {
      this.cfg.events.publish(namespace, '/tasks/exit', packAny('containerd.events.TaskExit', ev.TaskExit, {
        containerId: id, id, pid, exitStatus, exitedAt,
      }));
      this.cfg.events.publish(namespace, '/tasks/delete', packAny('containerd.events.TaskDelete', ev.TaskDelete, {
        containerId: id, pid, exitStatus, exitedAt, id: '',
      }));
    } catch (err) {
      this.cfg.log.warn('failed to publish exit of dead shim', { id, error: messageOf(err) });
    }
  }

  // ---------------------------------------------------------------- restart

  private async loadExistingTasks(): Promise<void> {
    const namespaces = await readdir(this.cfg.state, { withFileTypes: true });
    await Promise.all(namespaces.filter((d) => d.isDirectory() && !d.name.startsWith('.')).map(async (d) => {
      const ns = d.name;
      try {
        await this.loadShims(ns);
        await this.cleanupWorkDirs(ns);
      } catch (err) {
        this.cfg.log.error('loading tasks in namespace', { namespace: ns, error: messageOf(err) });
      }
    }));
  }

  /** Reconnects to the namespace's shims, after retiring the spares a killed daemon left. */
  private async loadShims(ns: string): Promise<void> {
    const dirs = await readdir(join(this.cfg.state, ns), { withFileTypes: true });
    await Promise.all(dirs.filter((d) => d.name.startsWith(SPARE_PREFIX)).map((d) => this.spares.retireLeftover(ns, d.name)));
    await Promise.all(dirs.filter((d) => d.isDirectory() && !d.name.startsWith('.')).map((d) => this.loadShim(ns, d.name)));
  }

  private async loadShim(ns: string, id: string): Promise<void> {
    const bundle = bundleFor(this.cfg.state, ns, id);
    const log = this.cfg.log;
    let entries: string[];
    try {
      entries = await readdir(bundle.path);
    } catch (err) {
      log.error('fast path read bundle path', { path: bundle.path, error: messageOf(err) });
      await deleteBundle(bundle).catch(() => undefined);
      return;
    }
    if (entries.length === 0) {
      await deleteBundle(bundle).catch(() => undefined);
      return;
    }
    let runtime = '';
    try {
      runtime = await readFile(join(bundle.path, 'shim-binary-path'), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.error('failed to read `runtime` path from bundle', { error: messageOf(err) });
    }
    if (!runtime) {
      try {
        runtime = (await this.cfg.containers.get({ namespace: ns }, id)).runtime.name;
      } catch (err) {
        log.error('loading container', { id, error: messageOf(err) });
        await deleteBundle(bundle).catch(() => undefined);
        return;
      }
    }
    let binary: ShimBinaryConfig;
    try {
      binary = this.binaryConfig(await this.cfg.resolver.resolve(runtime));
    } catch (err) {
      log.error('failed to resolve runtime path', { error: messageOf(err) });
      await deleteBundle(bundle).catch(() => undefined);
      return;
    }
    let task: ShimTask | undefined;
    let shimLog: ShimLog | undefined;
    try {
      const address = await readFile(join(bundle.path, 'address'), 'utf8');
      const client = await TtrpcClient.connect(address, { timeoutMs: this.cfg.timeouts.loadMs });
      shimLog = await ShimLog.open(bundle);
      task = this.attach(bundle, client, shimLog, binary);
      await task.connect({ timeoutMs: this.cfg.timeouts.loadMs });
      if (!(await this.holdsTask(task))) {
        // The daemon stopped between starting the shim and creating its task: the shim serves
        // nothing, and as a live entry it would make the id unusable ("already exists").
        log.warn('shim has no task: shutting it down', { id, namespace: ns });
        await task.shutdown({ timeoutMs: this.cfg.timeouts.shutdownMs }).catch(() => undefined);
        throw new NotFoundError(`task ${id} was never created in its shim`);
      }
      this.live.set(keyOf(ns, id), task);
      log.info('reconnected to shim', { id, namespace: ns });
    } catch (err) {
      log.warn('failed to load shim', { id, namespace: ns, error: messageOf(err) });
      if (task) {
        // The close handler runs the cleanup.
        this.disconnect(keyOf(ns, id), task);
        await task.shim.closed;
      } else {
        shimLog?.close();
        await this.cleanupAfterDeadShim(bundle, binary);
      }
    }
  }

  /** Whether a reconnected shim runs the task at all (its State is NOT_FOUND when it never got one). */
  private async holdsTask(task: ShimTask): Promise<boolean> {
    try {
      await task.state({ timeoutMs: this.cfg.timeouts.loadMs });
      return true;
    } catch (err) {
      // Anything but a definite "no such task" keeps the task: it may be running.
      return !isNotFound(err);
    }
  }

  private async cleanupWorkDirs(ns: string): Promise<void> {
    let dirs: string[];
    try {
      dirs = await readdir(join(this.cfg.root, ns));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const d of dirs) {
      if (this.live.has(keyOf(ns, d))) continue;
      const path = join(this.cfg.root, ns, d);
      await rm(path, { recursive: true, force: true }).catch((err) => this.cfg.log.error('cleanup working dir', { path, error: messageOf(err) }));
    }
  }

  /** Disconnects from every shim without stopping them (they outlive the daemon). */
  async close(): Promise<void> {
    this.closing = true;
    await this.spares.close();
    const pending = [...this.cleanups.values()];
    for (const t of this.live.values()) t.shim.close();
    await Promise.allSettled([...pending, ...[...this.live.values()].map((t) => t.shim.closed)]);
  }
}
