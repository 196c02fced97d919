/**
 * The tasks service's local API (io.containerd.service.v1.tasks-service). Requests and
 * results are plain objects shaped like containerd.services.tasks.v1 messages, so the gRPC
 * plugin only copies fields; the service resolves containers, runtimes and tasks.
 */
import type { AnyMessage } from '../events/exchange.js';
import type { Mount } from '../mount/types.js';
import type { RequestContext } from '../namespaces/namespaces.js';
import { PluginType, serviceRef } from '../plugin/types.js';
import type { ProcessInfo, TaskStatus } from './runtime.js';

/** containerd.v1.types.Process. */
export interface ProcessView {
  containerId: string;
  id: string;
  pid: number;
  status: TaskStatus;
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
  exitStatus: number;
  exitedAt: Date;
}

export interface CreateTaskInput {
  containerId: string;
  rootfs: Mount[];
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
  /** A checkpoint image descriptor (restores are not supported). */
  checkpoint?: { mediaType: string; digest: string; size: number };
  options?: AnyMessage;
  runtimePath: string;
}

export interface DeleteResult {
  id: string;
  pid: number;
  exitStatus: number;
  exitedAt: Date;
}

export interface MetricView {
  timestamp: Date;
  id: string;
  data?: AnyMessage;
}

export interface TasksService {
  create(ctx: RequestContext, req: CreateTaskInput): Promise<{ containerId: string; pid: number }>;
  start(ctx: RequestContext, containerId: string, execId: string): Promise<{ pid: number }>;
  delete(ctx: RequestContext, containerId: string): Promise<DeleteResult>;
  deleteProcess(ctx: RequestContext, containerId: string, execId: string): Promise<DeleteResult>;
  get(ctx: RequestContext, containerId: string, execId: string): Promise<ProcessView>;
  list(ctx: RequestContext, filter: string): Promise<ProcessView[]>;
  kill(ctx: RequestContext, containerId: string, execId: string, signal: number, all: boolean): Promise<void>;
  exec(ctx: RequestContext, req: { containerId: string; execId: string; stdin: string; stdout: string; stderr: string; terminal: boolean; spec?: AnyMessage }): Promise<void>;
  resizePty(ctx: RequestContext, containerId: string, execId: string, width: number, height: number): Promise<void>;
  closeIO(ctx: RequestContext, containerId: string, execId: string, stdin: boolean): Promise<void>;
  pause(ctx: RequestContext, containerId: string): Promise<void>;
  resume(ctx: RequestContext, containerId: string): Promise<void>;
  listPids(ctx: RequestContext, containerId: string): Promise<ProcessInfo[]>;
  checkpoint(ctx: RequestContext, containerId: string): Promise<never>;
  update(ctx: RequestContext, containerId: string, resources: AnyMessage | undefined, annotations: Record<string, string>): Promise<void>;
  metrics(ctx: RequestContext, filters: readonly string[]): Promise<MetricView[]>;
  wait(ctx: RequestContext, containerId: string, execId: string): Promise<{ exitStatus: number; exitedAt: Date }>;
}

export const TasksServiceRef = serviceRef<TasksService>(PluginType.Service, 'tasks-service');
