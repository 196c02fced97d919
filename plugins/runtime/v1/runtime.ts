/**
 * io.containerd.runtime.v1.linux: tasks run by containerd-shim (one shim per container,
 * started by the daemon with the socket already bound), the live task list, cleanup after a
 * shim that died (runc delete --force, rootfs unmount, synthetic exit/delete events), and
 * reconnection to the shims that kept running across a daemon restart.
 *
 * Events: the daemon publishes /tasks/create and /tasks/delete here (start, exec-started,
 * paused and resumed in task.ts); the shim publishes /tasks/exit by running
 * `<containerd-binary> --address A publish --topic T --namespace NS`.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { TtrpcClient, TtrpcClosedError } from '../../../api/ttrpc/index.js';
import type { ContainerStore } from '../../../core/containers/containers.js';
import {
  AlreadyExistsError,
  Code,
  codeOf,
  FailedPreconditionError,
  InvalidArgumentError,
  isNotFound,
  messageOf,
  NotFoundError,
} from '../../../core/errdefs/errdefs.js';
import { packAny } from '../../../core/events/any.js';
import type { EventExchange } from '../../../core/events/exchange.js';
import { validateIdentifier } from '../../../core/identifiers/identifiers.js';
import type { Logger } from '../../../core/log/logger.js';
import type { CallOptions, CreateOpts, Exit, PlatformRuntime, Task } from '../../../core/runtime/runtime.js';
import type { RuncOptions } from '../../../api/gen/runc/runctypes/runc.js';
import {
  deleteBundle,
  legacyShimAddress,
  loadBundle,
  newBundle,
  readAddress,
  readPidFile,
  shimAddress,
  type V1Bundle,
} from './bundle.js';
import { killProcess, launchShim, ShimOutput } from './launch.js';
import { forceDeleteCommand, runcOptionsOf, runtimeBinary, shimArgs, shimCgroupOf, type RuntimeV1Config } from './options.js';
import { LinuxTask, ShimHandle } from './task.js';

export const RUNTIME_V1_ID = 'io.containerd.runtime.v1.linux';

/** containerd's cleanupTimeout for work done after a failure (killing a shim, runc delete). */
const CLEANUP_TIMEOUT_MS = 60_000;
/** Exit status reported for a task whose shim died under it (128 + SIGKILL). */
const DEAD_SHIM_STATUS = 137;
/**
 * How long after an init process exited a delete waits for the shim's /tasks/exit to arrive
 * before killing the shim. The shim publishes through a child process per event, one at a
 * time; killing it too early would lose the event, and publishing /tasks/delete first would
 * invert the order clients expect (create, start, exit, delete).
 */
const EXIT_EVENT_GRACE_MS = 2_000;

export interface LinuxRuntimeOptions {
  /** `<root>/io.containerd.runtime.v1.linux`: work dirs. */
  root: string;
  /** `<state>/io.containerd.runtime.v1.linux`: bundles. */
  state: string;
  /** The daemon's gRPC address (shims publish events to it; it also keys socket names). */
  address: string;
  /** What shims run to publish events (-containerd-binary). */
  containerdBinary: string;
  config: RuntimeV1Config;
  /** How long to wait for a reloaded shim to answer (io.containerd.timeout.shim.load). */
  loadTimeoutMs: number;
  containers: ContainerStore;
  events: EventExchange;
  log: Logger;
}

const keyOf = (ns: string, id: string) => `${ns}\u0000${id}`;

/** Whether `pid` is a containerd-shim serving `bundle` (its -workdir is the bundle's). */
function isShimOf(pid: number, bundle: V1Bundle): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const at = argv.indexOf('-workdir');
    return at > 0 && argv[at + 1] === bundle.workDir;
  } catch {
    return false;
  }
}

/** Whether a failed call got an answer from the shim (rather than being cut off locally). */
function answeredByShim(err: unknown): boolean {
  if (err instanceof TtrpcClosedError) return false;
  const code = codeOf(err);
  return code !== Code.CANCELLED && code !== Code.DEADLINE_EXCEEDED;
}

export class LinuxRuntime implements PlatformRuntime {
  readonly id = RUNTIME_V1_ID;
  private readonly list = new Map<string, LinuxTask>();
  /** Tasks out of the list whose delete waits for their exit event. */
  private readonly deleting = new Map<string, LinuxTask>();
  private closing = false;
  private readonly stop = new AbortController();

  constructor(private readonly o: LinuxRuntimeOptions) {}

  async init(): Promise<void> {
    await mkdir(this.o.root, { recursive: true, mode: 0o711 });
    await mkdir(this.o.state, { recursive: true, mode: 0o711 });
    void this.followExits().catch((err) => this.o.log.error('following task exits', { error: messageOf(err) }));
    await this.restoreTasks();
  }

  /** Notes each init exit event the shims publish (see EXIT_EVENT_GRACE_MS). */
  private async followExits(): Promise<void> {
    const { TaskExit } = await import('../../../api/gen/events/task.js');
    const exits = this.o.events.subscribe(['topic=="/tasks/exit"'], this.stop.signal);
    for await (const env of exits) {
      if (!env.event || env.event.typeUrl !== 'containerd.events.TaskExit') continue;
      let exit: { containerId: string; id: string };
      try {
        exit = TaskExit.decode(env.event.value);
      } catch {
        continue;
      }
      if (exit.id && exit.id !== exit.containerId) continue;
      const key = keyOf(env.namespace, exit.containerId);
      (this.list.get(key) ?? this.deleting.get(key))?.noteExitPublished();
    }
  }

  private publish = (namespace: string, topic: string, event: { typeUrl: string; value: Uint8Array }) => {
    this.o.events.publish(namespace, topic, event);
  };

  // ------------------------------------------------------------------ PlatformRuntime

  async create(namespace: string, id: string, opts: CreateOpts, call?: CallOptions): Promise<Task> {
    try {
      validateIdentifier(id);
    } catch (err) {
      throw new InvalidArgumentError(`invalid task id: ${messageOf(err).replace(/: invalid argument$/, '')}`);
    }
    if (this.o.config.no_shim) {
      throw new FailedPreconditionError('no_shim is not supported by berth: set no_shim = false to run tasks through containerd-shim');
    }
    const key = keyOf(namespace, id);
    if (this.list.has(key)) throw new AlreadyExistsError(`task ${id}`);
    const ropts = runcOptionsOf(opts.runtimeOptions);
    const cgroup = shimCgroupOf(opts.taskOptions);
    const bundle = await newBundle(this.o.root, this.o.state, namespace, id, opts.spec.value);
    let handle: ShimHandle | undefined;
    let shimPid = 0;
    let createSent = false;
    try {
      const ev = await import('../../../api/gen/events/task.js');
      const address = shimAddress(this.o.address, namespace, id);
      const launched = await launchShim({
        binary: this.o.config.shim,
        args: shimArgs(this.o.config, ropts, {
          namespace,
          workDir: bundle.workDir,
          address: this.o.address,
          containerdBinary: this.o.containerdBinary,
          debug: this.o.config.shim_debug,
        }),
        bundle,
        address,
        cgroup,
        debug: this.o.config.shim_debug,
        onExit: () => this.o.log.info('shim reaped', { id, namespace }),
      });
      shimPid = launched.pid;
      this.o.log.info(`shim ${this.o.config.shim} started`, { id, namespace, pid: launched.pid, address, debug: this.o.config.shim_debug });
      handle = new ShimHandle(launched.client, namespace, launched.output);
      const rootfs = opts.rootfs.map((m) => ({ type: m.type, source: m.source, target: '', options: [...m.options] }));
      const io = { stdin: opts.io.stdin, stdout: opts.io.stdout, stderr: opts.io.stderr, terminal: opts.io.terminal };
      createSent = true;
      const created = await handle.rpc.create({
        id,
        bundle: bundle.path,
        runtime: runtimeBinary(this.o.config, ropts),
        rootfs,
        ...io,
        checkpoint: opts.checkpoint,
        parentCheckpoint: '',
        options: opts.taskOptions
          ? { typeUrl: opts.taskOptions.typeUrl, value: Buffer.from(opts.taskOptions.value) }
          : undefined,
      }, { signal: call?.signal, timeoutMs: call?.timeoutMs });
      const task = new LinuxTask(bundle, handle, created.pid, this.publish);
      this.list.set(key, task);
      this.watch(task);
      task.emit('/tasks/create', packAny('containerd.events.TaskCreate', ev.TaskCreate, {
        containerId: id,
        bundle: bundle.path,
        rootfs,
        io,
        checkpoint: opts.checkpoint,
        pid: created.pid,
      }));
      return task;
    } catch (err) {
      if (handle) handle.close();
      if (shimPid) {
        const gone = await killProcess(shimPid, CLEANUP_TIMEOUT_MS).catch(() => false);
        if (!gone) this.o.log.error('failed to kill shim', { id, namespace, pid: shimPid });
      }
      if (createSent && !answeredByShim(err)) {
        // The shim was killed while runc may have been creating the container.
        await this.terminate(bundle).catch(() => undefined);
      }
      await deleteBundle(bundle).catch((e) => this.o.log.error('failed to delete bundle', { id, error: messageOf(e) }));
      throw err;
    }
  }

  get(namespace: string, id: string): Task {
    const t = this.list.get(keyOf(namespace, id));
    if (!t) throw new NotFoundError(`task ${id}`);
    return t;
  }

  tasks(namespace: string | undefined): Task[] {
    return [...this.list.values()].filter((t) => namespace === undefined || t.namespace === namespace);
  }

  /**
   * Shim.Delete, then the shim is killed and the bundle removed. When the shim no longer
   * knows the task (NOT_FOUND) the teardown still happens and the error is returned.
   */
  async delete(namespace: string, id: string, call?: CallOptions): Promise<Exit> {
    const key = keyOf(namespace, id);
    const task = this.list.get(key);
    if (!task) throw new NotFoundError(`task ${id}`);
    let exit: Exit | undefined;
    let shimErr: unknown;
    try {
      exit = await task.deleteInit(call);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      shimErr = err;
    }
    if (this.list.get(key) === task) this.list.delete(key);
    if (exit) {
      this.deleting.set(key, task);
      try {
        await this.awaitExitEvent(task, exit, call);
      } finally {
        if (this.deleting.get(key) === task) this.deleting.delete(key);
      }
    }
    await this.stopShim(task, call);
    try {
      await deleteBundle(task.bundle);
    } catch (err) {
      this.o.log.error('failed to delete bundle', { id, namespace, error: messageOf(err) });
    }
    if (shimErr) throw shimErr;
    const ev = await import('../../../api/gen/events/task.js');
    task.emit('/tasks/delete', packAny('containerd.events.TaskDelete', ev.TaskDelete, {
      containerId: id, pid: exit!.pid, exitStatus: exit!.status, exitedAt: exit!.timestamp, id: '',
    }));
    return exit!;
  }

  /** Waits (bounded) until the shim's exit event for a recent exit has been published. */
  private async awaitExitEvent(task: LinuxTask, exit: Exit, call?: CallOptions): Promise<void> {
    const remaining = exit.timestamp.getTime() + EXIT_EVENT_GRACE_MS - Date.now();
    if (remaining <= 0) return;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const expired = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, remaining);
      onAbort = resolve;
      call?.signal?.addEventListener('abort', onAbort, { once: true });
    });
    try {
      await Promise.race([task.exitPublished, expired]);
    } finally {
      clearTimeout(timer);
      if (onAbort) call?.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Kills the shim (its pid as it reports it) and drops the connection. */
  private async stopShim(task: LinuxTask, call?: CallOptions): Promise<void> {
    try {
      const pid = await task.shimPid({ signal: call?.signal, timeoutMs: CLEANUP_TIMEOUT_MS });
      const gone = await killProcess(pid, CLEANUP_TIMEOUT_MS, call?.signal);
      if (!gone) this.o.log.warn('timed out while waiting for shim to exit', { id: task.id, pid });
    } catch (err) {
      this.o.log.error('failed to kill shim', { id: task.id, namespace: task.namespace, error: messageOf(err) });
    }
    task.shim.close();
  }

  // ------------------------------------------------------------------ dead shims

  /** Cleans up after the shim if its connection drops while the task is still listed. */
  private watch(task: LinuxTask): void {
    task.shim.client.onClose(() => {
      task.shim.output?.close();
      if (this.closing) return;
      const key = keyOf(task.namespace, task.id);
      if (this.list.get(key) !== task) return;
      void this.cleanupAfterDeadShim(task.bundle, task).catch((err) => {
        this.o.log.error('cleaning up after dead shim', { id: task.id, namespace: task.namespace, error: messageOf(err) });
      });
    });
  }

  /**
   * What containerd does when a shim is gone: force-delete the runc container, unmount the
   * rootfs, report the init process as killed (/tasks/exit), drop the task, remove the bundle,
   * make sure the shim is dead, and report the deletion (/tasks/delete).
   */
  private async cleanupAfterDeadShim(bundle: V1Bundle, task?: LinuxTask): Promise<void> {
    const { id, namespace } = bundle;
    this.o.log.warn('cleaning up after shim dead', { id, namespace });
    const pid = await readPidFile(join(bundle.path, 'init.pid'));
    try {
      await this.terminate(bundle);
    } catch (err) {
      if (this.o.config.shim_debug) throw new Error(`failed to terminate task, leaving bundle for debugging: ${messageOf(err)}`, { cause: err });
      this.o.log.warn('failed to terminate task', { id, error: messageOf(err) });
    }
    const exitedAt = new Date();
    const ev = await import('../../../api/gen/events/task.js');
    const publish = (topic: string, event: { typeUrl: string; value: Uint8Array }) => {
      try {
        this.o.events.publish(namespace, topic, event);
      } catch (err) {
        this.o.log.warn('failed to publish event', { topic, id, error: messageOf(err) });
      }
    };
    publish('/tasks/exit', packAny('containerd.events.TaskExit', ev.TaskExit, {
      containerId: id, id, pid, exitStatus: DEAD_SHIM_STATUS, exitedAt,
    }));
    const key = keyOf(namespace, id);
    if (task && this.list.get(key) === task) this.list.delete(key);
    task?.shim.close();
    // The recorded pid may have been recycled since; only a process that is this bundle's
    // shim gets the SIGKILL.
    const shimPid = await readPidFile(join(bundle.path, 'shim.pid'));
    const stillShim = shimPid > 0 && isShimOf(shimPid, bundle);
    try {
      await deleteBundle(bundle);
    } catch (err) {
      this.o.log.error('delete bundle', { id, error: messageOf(err) });
    }
    if (stillShim) await killProcess(shimPid, 0).catch(() => undefined);
    publish('/tasks/delete', packAny('containerd.events.TaskDelete', ev.TaskDelete, {
      containerId: id, pid, exitStatus: DEAD_SHIM_STATUS, exitedAt, id: '',
    }));
  }

  /** `runc delete --force` the container and unmount its rootfs. */
  private async terminate(bundle: V1Bundle): Promise<void> {
    const { id, namespace } = bundle;
    let ropts: RuncOptions;
    try {
      const container = await this.o.containers.get({ namespace }, id);
      ropts = runcOptionsOf(container.runtime.options);
    } catch (err) {
      // Without the record the shim's choices are unknown; the defaults are the best guess,
      // and the rootfs must be unmounted before the bundle is removed in any case.
      this.o.log.warn('runtime options unknown, using defaults', { id, namespace, error: messageOf(err) });
      ropts = runcOptionsOf(undefined);
    }
    const cmd = forceDeleteCommand(this.o.config, ropts, namespace, id);
    await new Promise<void>((resolve) => {
      execFile(cmd.file, cmd.args, { timeout: CLEANUP_TIMEOUT_MS }, (err, _stdout, stderr) => {
        if (err) this.o.log.warn(`delete runtime state ${id}`, { error: (stderr || messageOf(err)).trim() });
        resolve();
      });
    });
    const { unmountAll } = await import('../../../core/mount/mount.js');
    try {
      await unmountAll(join(bundle.path, 'rootfs'), 0);
    } catch (err) {
      this.o.log.warn('unmount task rootfs', { id, path: bundle.path, error: messageOf(err) });
    }
  }

  // ------------------------------------------------------------------ restart

  private async restoreTasks(): Promise<void> {
    const namespaces = await readdir(this.o.state, { withFileTypes: true });
    for (const ns of namespaces) {
      if (!ns.isDirectory() || ns.name.startsWith('.')) continue;
      this.o.log.debug('loading tasks in namespace', { namespace: ns.name });
      const dirs = await readdir(join(this.o.state, ns.name), { withFileTypes: true });
      await Promise.all(dirs
        .filter((d) => d.isDirectory() && !d.name.startsWith('.'))
        .map((d) => this.loadTask(ns.name, d.name)));
    }
  }

  private async loadTask(namespace: string, id: string): Promise<void> {
    const bundle = loadBundle(this.o.root, this.o.state, namespace, id);
    const pid = await readPidFile(join(bundle.path, 'init.pid'));
    const address = (await readAddress(bundle)) || legacyShimAddress(namespace, id);
    let client: TtrpcClient | undefined;
    try {
      client = await TtrpcClient.connect(address, { timeoutMs: this.o.loadTimeoutMs });
      const probe = new ShimHandle(client, namespace, undefined);
      await probe.rpc.shimInfo({}, { timeoutMs: this.o.loadTimeoutMs });
    } catch (err) {
      client?.close();
      this.o.log.error('connecting to shim', { id, namespace, error: messageOf(err) });
      try {
        await this.cleanupAfterDeadShim(bundle);
      } catch (e) {
        this.o.log.error('cleaning up after dead shim', { id, namespace, bundle: bundle.path, error: messageOf(e) });
      }
      return;
    }
    let output: ShimOutput | undefined;
    try {
      output = await ShimOutput.open(bundle.workDir, this.o.config.shim_debug);
    } catch (err) {
      // The task is still usable; only the shim's own log lines are lost.
      this.o.log.error('opening shim log pipes', { id, namespace, path: bundle.workDir, error: messageOf(err) });
    }
    const task = new LinuxTask(bundle, new ShimHandle(client, namespace, output), pid, this.publish);
    this.list.set(keyOf(namespace, id), task);
    this.watch(task);
    this.o.log.info('reconnected to shim', { id, namespace, pid });
  }

  /** Disconnects from every shim; they keep running and are reloaded on the next start. */
  async close(): Promise<void> {
    this.closing = true;
    this.stop.abort();
    for (const t of this.list.values()) t.shim.close();
  }
}
