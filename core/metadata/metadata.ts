/**
 * The metadata store: one embedded ACID database holding every namespaced object
 * (namespaces, content records, snapshot records, images, containers, leases) and the
 * garbage-collection graph over them. Domain stores are attached by the metadata plugin;
 * services reach them through the Metadata instance.
 */
import { PluginType } from '../plugin/types.js';

/** Labels as stored everywhere: plain string map. */
export type Labels = Record<string, string>;

export interface Namespace {
  name: string;
  labels: Labels;
}

export interface NamespaceStore {
  /** Creates the namespace; ALREADY_EXISTS if it exists. */
  create(name: string, labels: Labels): Namespace;
  /** Labels of an existing namespace, or undefined. */
  get(name: string): Namespace | undefined;
  list(): Namespace[];
  /** Sets (value non-empty) or removes (value empty) one label; creates the namespace if missing. */
  setLabel(name: string, key: string, value: string): void;
  /** Replaces all labels. */
  setLabels(name: string, labels: Labels): void;
  /** FAILED_PRECONDITION naming what the namespace still holds; NOT_FOUND if missing. */
  delete(name: string): void;
  /** Creates the namespace if it does not exist yet (first write into it). */
  ensure(name: string): void;
}

/**
 * Something that lives inside namespaces and must be empty before a namespace can go
 * (images, blobs, snapshots on a snapshotter, containers, leases).
 */
export interface NamespaceResource {
  /** Short descriptions of what `namespace` still holds of this kind (empty when none). */
  holdings(namespace: string): string[];
}

/** A node of the gc graph: `<kind>/<namespace>/<id>` keys are built by the collector. */
export interface GcNode {
  kind: 'content' | 'snapshot' | 'image' | 'container' | 'lease' | 'ingest';
  namespace: string;
  /** For snapshots: `<snapshotter>/<key>`; for content: the digest. */
  id: string;
  /**
   * Reached through a lease labelled `containerd.io/gc.flat`: the node is kept, but its label
   * references are not followed (snapshot parents still are).
   */
  flat?: boolean;
}

/**
 * One kind of object in the gc graph. Each domain store that joins collection registers a
 * source: it names its roots, the edges out of a node, and how to remove what is unreachable.
 */
export interface GcSource {
  readonly kind: GcNode['kind'];
  /** Roots of this kind in every namespace (images, containers, gc.root-labelled objects…). */
  roots(now: Date): Iterable<GcNode>;
  /** Nodes a node of this kind references (label references, parents, targets). */
  references(node: GcNode): Iterable<GcNode>;
  /** Every node of this kind (candidates for collection). */
  all(): Iterable<GcNode>;
  /** Removes unreachable nodes of this kind from the metadata (inside the gc transaction). */
  remove(nodes: GcNode[]): void;
  /** Work to do outside the transaction after removal (backend deletes, cleanup). */
  afterCollect?(removed: GcNode[]): Promise<void>;
}

export interface GcStats {
  removed: number;
  ms: number;
}

/** The metadata plugin's instance (io.containerd.metadata.v1). */
export interface Metadata {
  readonly path: string;
  readonly namespaces: NamespaceStore;
  /** Namespaced content over the content plugin (gc-aware, lease-aware). */
  readonly content: import('../content/content.js').ContentStore;
  /** Namespaced snapshotters by name over every snapshotter plugin. */
  readonly snapshotters: ReadonlyMap<string, import('../snapshots/snapshotter.js').Snapshotter>;
  readonly leases: import('../leases/leases.js').LeaseManager;
  readonly images: import('../images/images.js').ImageStore;
  readonly containers: import('../containers/containers.js').ContainerStore;
  /** Runs `fn` in one write transaction (nested calls join the outer one). */
  transaction<T>(fn: () => T): T;
  /** The raw database handle for domain stores kept beside the metadata plugin. */
  readonly db: import('better-sqlite3').Database;
  /** Registers something namespaces can hold (checked before deleting a namespace). */
  addNamespaceResource(r: NamespaceResource): void;
  /** Registers a kind of node for garbage collection. */
  addGcSource(s: GcSource): void;
  /** Runs one mark-and-sweep collection now. */
  collectGarbage(): Promise<GcStats>;
  /** Notifies the gc scheduler of a deletion (schedules a collection). */
  markDeletion(): void;
  /** Notifies the gc scheduler of a mutation. */
  markMutation(): void;
  /** Subscribes the gc scheduler to deletion/mutation notices. */
  onChange(fn: (kind: 'deletion' | 'mutation') => void): void;
}

/** The gc scheduler's instance (io.containerd.gc.v1.scheduler). */
export interface GcScheduler {
  /** Schedules a collection now and resolves with its stats once one that started after this call ends. */
  scheduleAndWait(signal?: AbortSignal): Promise<GcStats>;
}

declare module '../plugin/types.js' {
  interface PluginTypeMap {
    [PluginType.Metadata]: Metadata;
    [PluginType.GC]: GcScheduler;
  }
}
