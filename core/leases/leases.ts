/**
 * Leases protect resources from garbage collection while a client works with them
 * (a pull, an unpack, a container create). A lease with `containerd.io/gc.expire` in the
 * past no longer protects anything and is itself collected.
 */
import type { Labels } from '../metadata/metadata.js';
import type { RequestContext } from '../namespaces/namespaces.js';
import { PluginType, serviceRef } from '../plugin/types.js';

export interface Lease {
  id: string;
  createdAt: Date;
  labels: Labels;
}

/** A resource held by a lease: type `content` (id = digest), `ingests` (id = ref), or `snapshots/<snapshotter>` (id = key). */
export interface LeaseResource {
  id: string;
  type: string;
}

export interface LeaseManager {
  /** Empty id: the server generates `<nanos>-<random>`. ALREADY_EXISTS if taken. */
  create(ctx: RequestContext, id: string, labels: Labels): Promise<Lease>;
  /** NOT_FOUND if missing; `sync` waits for the collection it triggers. */
  delete(ctx: RequestContext, id: string, sync?: boolean): Promise<void>;
  list(ctx: RequestContext, filters: readonly string[]): Promise<Lease[]>;
  addResource(ctx: RequestContext, lease: string, resource: LeaseResource): Promise<void>;
  deleteResource(ctx: RequestContext, lease: string, resource: LeaseResource): Promise<void>;
  listResources(ctx: RequestContext, lease: string): Promise<LeaseResource[]>;
}

/** The leases service (io.containerd.service.v1.leases-service): the lease manager plus synchronous gc on delete. */
export const LeasesServiceRef = serviceRef<LeaseManager>(PluginType.Service, 'leases-service');
