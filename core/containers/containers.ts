/** Container records: metadata only (a task is the running process, see the tasks service). */
import type { AnyMessage } from '../events/exchange.js';
import type { Labels } from '../metadata/metadata.js';
import type { RequestContext } from '../namespaces/namespaces.js';
import { PluginType, serviceRef } from '../plugin/types.js';

export interface Container {
  id: string;
  labels: Labels;
  image: string;
  runtime: { name: string; options?: AnyMessage };
  /** The OCI spec as an Any (JSON value, type URL types.containerd.io/opencontainers/runtime-spec/1/Spec). */
  spec?: AnyMessage;
  snapshotter: string;
  snapshotKey: string;
  extensions: Record<string, AnyMessage>;
  createdAt: Date;
  updatedAt: Date;
}

export interface ContainerStore {
  get(ctx: RequestContext, id: string): Promise<Container>;
  /** Filters: id, image, runtime.name, snapshotter, labels.<key>. */
  list(ctx: RequestContext, filters: readonly string[]): Promise<Container[]>;
  create(ctx: RequestContext, c: Omit<Container, 'createdAt' | 'updatedAt'>): Promise<Container>;
  update(ctx: RequestContext, c: Omit<Container, 'createdAt' | 'updatedAt'>, fieldpaths: readonly string[]): Promise<Container>;
  delete(ctx: RequestContext, id: string): Promise<void>;
}

/** Type URL of the OCI runtime spec carried in Container.spec (JSON value). */
export const SPEC_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/Spec';
/** Type URL of an exec's OCI Process (JSON value). */
export const PROCESS_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/Process';
/** Type URL of Linux resources for task updates (JSON value). */
export const LINUX_RESOURCES_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources';

/**
 * The containers service's local API (io.containerd.service.v1.containers-service): the
 * store plus the /containers/* events.
 */
export interface ContainersService extends ContainerStore {}

export const ContainersServiceRef = serviceRef<ContainersService>(PluginType.Service, 'containers-service');
