/**
 * The runtime contract: a platform runtime (io.containerd.runtime.v2.task, and later the v1
 * linux runtime) turns a container record into a task — its init process — plus exec'd
 * processes. The tasks service is the only consumer; shims are the runtime's business.
 */
import type { AnyMessage } from '../events/exchange.js';
import type { Mount } from '../mount/types.js';
import { PluginType } from '../plugin/types.js';

/** Process status, numbered as containerd.v1.types.Status on the wire. */
export const TaskStatus = Object.freeze({
  Unknown: 0,
  Created: 1,
  Running: 2,
  Stopped: 3,
  Paused: 4,
  Pausing: 5,
} as const);
export type TaskStatus = (typeof TaskStatus)[keyof typeof TaskStatus];

/** Go's zero time.Time: what containerd reports as exited_at before a process exits. */
export const ZERO_TIME = new Date(-62135596800000);

/** Where a process's stdio goes (FIFO paths or URIs, as the client chose them). */
export interface ProcessIO {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

export interface ProcessState {
  pid: number;
  status: TaskStatus;
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
  exitStatus: number;
  exitedAt: Date;
}

/**
 * A shim's answer to State (runtime v1 or v2: the same fields) as a ProcessState: a status
 * outside the known range is Unknown, and a process that has not exited has Go's zero time.
 */
export function processStateOf(r: Omit<ProcessState, 'status' | 'exitedAt'> & { status: number; exitedAt: Date | undefined }): ProcessState {
  const known = r.status >= TaskStatus.Created && r.status <= TaskStatus.Pausing;
  return {
    pid: r.pid,
    status: (known ? r.status : TaskStatus.Unknown) as TaskStatus,
    stdin: r.stdin,
    stdout: r.stdout,
    stderr: r.stderr,
    terminal: r.terminal,
    exitStatus: r.exitStatus,
    exitedAt: r.exitedAt ?? ZERO_TIME,
  };
}

export interface Exit {
  pid: number;
  status: number;
  timestamp: Date;
}

export interface ProcessInfo {
  pid: number;
  info?: AnyMessage;
}

/** Per-call options: cancellation and a deadline (ms). */
export interface CallOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface CreateOpts {
  /** The container's spec Any; its value bytes become the bundle's config.json. */
  spec: AnyMessage;
  rootfs: Mount[];
  io: ProcessIO;
  /** Path of a checkpoint to restore from ('' for none). */
  checkpoint: string;
  /** Runtime name (io.containerd.runc.v2) or an absolute shim path. */
  runtime: string;
  runtimeOptions?: AnyMessage;
  taskOptions?: AnyMessage;
}

export interface ExecOpts {
  /** The OCI Process as an Any (JSON value). */
  spec?: AnyMessage;
  io: ProcessIO;
}

/** A process inside a task: the init process (the task itself) or an exec. */
export interface Process {
  /** The container id for the init process, the exec id otherwise. */
  readonly id: string;
  state(opts?: CallOptions): Promise<ProcessState>;
  kill(signal: number, all: boolean, opts?: CallOptions): Promise<void>;
  resizePty(width: number, height: number, opts?: CallOptions): Promise<void>;
  closeIO(opts?: CallOptions): Promise<void>;
  /** Starts the process; resolves its pid when the runtime reports it with the start reply. */
  start(opts?: CallOptions): Promise<number | void>;
  wait(opts?: CallOptions): Promise<Exit>;
}

export interface ExecProcess extends Process {
  delete(opts?: CallOptions): Promise<Exit>;
}

export interface Task extends Process {
  readonly namespace: string;
  /** The init process's pid as the shim reports it (known from create, else asked for). */
  pid(opts?: CallOptions): Promise<number>;
  pause(opts?: CallOptions): Promise<void>;
  resume(opts?: CallOptions): Promise<void>;
  exec(execId: string, opts: ExecOpts, call?: CallOptions): Promise<ExecProcess>;
  pids(opts?: CallOptions): Promise<ProcessInfo[]>;
  checkpoint(path: string, options: AnyMessage | undefined, opts?: CallOptions): Promise<void>;
  update(resources: AnyMessage | undefined, annotations: Record<string, string>, opts?: CallOptions): Promise<void>;
  stats(opts?: CallOptions): Promise<AnyMessage | undefined>;
  /** An existing exec process; NOT_FOUND when the shim does not know it. */
  process(execId: string, opts?: CallOptions): Promise<ExecProcess>;
}

/** A runtime plugin's instance (io.containerd.runtime.v2.task, io.containerd.runtime.v1.linux). */
export interface PlatformRuntime {
  /** `<type>.<id>` of the plugin. */
  readonly id: string;
  create(namespace: string, id: string, opts: CreateOpts, call?: CallOptions): Promise<Task>;
  /** The live task; NOT_FOUND when there is none. */
  get(namespace: string, id: string): Task;
  /** Tasks in `namespace`, or in every namespace when it is undefined. */
  tasks(namespace: string | undefined): Task[];
  /** Deletes the task and tears its shim down; returns how the init process ended. */
  delete(namespace: string, id: string, call?: CallOptions): Promise<Exit>;
}

declare module '../plugin/types.js' {
  interface PluginTypeMap {
    [PluginType.RuntimeV2]: PlatformRuntime;
    [PluginType.RuntimeV1]: PlatformRuntime;
  }
}
