/**
 * The snapshotter contract with containerd's semantics. A snapshot is active (writable,
 * from Prepare), a view (read-only, from View) or committed (immutable, from Commit, the only
 * kind that can be a parent). Every snapshotter — overlayfs, native, btrfs, proxies — and the
 * namespaced metadata view over them implements it.
 */
import type { Labels } from '../metadata/metadata.js';
import type { Mount } from '../mount/types.js';
import type { RequestContext } from '../namespaces/namespaces.js';
import { PluginType } from '../plugin/types.js';

export enum Kind {
  Unknown = 0,
  View = 1,
  Active = 2,
  Committed = 3,
}

export const kindName = (k: Kind) => ({ [Kind.View]: 'view', [Kind.Active]: 'active', [Kind.Committed]: 'committed' } as Record<number, string>)[k] ?? 'unknown';

export interface SnapshotInfo {
  kind: Kind;
  name: string;
  /** Name of the parent ('' for none). */
  parent: string;
  labels: Labels;
  createdAt: Date;
  updatedAt: Date;
}

export interface Usage {
  /** Bytes used by this snapshot alone (not its parents). */
  size: number;
  inodes: number;
}

export interface SnapshotOptions {
  labels?: Labels;
}

export interface Snapshotter {
  /** NOT_FOUND if missing. */
  stat(ctx: RequestContext, key: string): Promise<SnapshotInfo>;
  /** Updates labels (field paths `labels` / `labels.<key>`; none = replace all). */
  update(ctx: RequestContext, info: Pick<SnapshotInfo, 'name' | 'labels'>, fieldpaths?: readonly string[]): Promise<SnapshotInfo>;
  usage(ctx: RequestContext, key: string): Promise<Usage>;
  /** Mounts of an active or view snapshot; FAILED_PRECONDITION for committed. */
  mounts(ctx: RequestContext, key: string): Promise<Mount[]>;
  /** ALREADY_EXISTS if key exists; NOT_FOUND if parent missing; parent must be committed. */
  prepare(ctx: RequestContext, key: string, parent: string, opts?: SnapshotOptions): Promise<Mount[]>;
  view(ctx: RequestContext, key: string, parent: string, opts?: SnapshotOptions): Promise<Mount[]>;
  /** Commits active `key` as `name`; ALREADY_EXISTS if name exists; FAILED_PRECONDITION if not active. */
  commit(ctx: RequestContext, name: string, key: string, opts?: SnapshotOptions): Promise<void>;
  /** FAILED_PRECONDITION if it has children. */
  remove(ctx: RequestContext, key: string): Promise<void>;
  /** Every snapshot matching filters (fields: name, parent, kind, labels.<key>). */
  walk(ctx: RequestContext, fn: (info: SnapshotInfo) => void | Promise<void>, filters?: readonly string[]): Promise<void>;
  /** Removes storage no snapshot refers to any more (optional, as in containerd). */
  cleanup?(ctx: RequestContext): Promise<void>;
  close(): Promise<void>;
}

declare module '../plugin/types.js' {
  interface PluginTypeMap {
    [PluginType.Snapshotter]: Snapshotter;
  }
}

/** Labels with meaning to snapshotters and unpackers. */
export const SnapshotLabel = Object.freeze({
  /** Target chain id a client is unpacking into (remote snapshotters, ALREADY_EXISTS handling). */
  ref: 'containerd.io/snapshot.ref',
  /** Labels under this prefix are passed through to the backend snapshotter. */
  inheritedPrefix: 'containerd.io/snapshot/',
  overlayUpperdir: 'containerd.io/snapshot/overlay.upperdir',
});

/** Labels the metadata layer passes to a backend snapshotter. */
export function inheritedLabels(labels: Labels | undefined): Labels {
  const out: Labels = {};
  for (const [k, v] of Object.entries(labels ?? {})) {
    if (k === SnapshotLabel.ref || k.startsWith(SnapshotLabel.inheritedPrefix)) out[k] = v;
  }
  return out;
}

/** containerd's Kind.String(): "View", "Active", "Committed" ("Unknown" otherwise). */
export function kindString(k: Kind): string {
  switch (k) {
    case Kind.View: return 'View';
    case Kind.Active: return 'Active';
    case Kind.Committed: return 'Committed';
    default: return 'Unknown';
  }
}

/** Parses a kind name case-insensitively; Unknown for anything else. */
export function parseKind(s: string): Kind {
  switch (s.toLowerCase()) {
    case 'view': return Kind.View;
    case 'active': return Kind.Active;
    case 'committed': return Kind.Committed;
    default: return Kind.Unknown;
  }
}

/**
 * The filter fields of a snapshot (`name`, `parent`, `kind`, `labels.<key>`), in the shape
 * core/filters' Adaptor expects. `parent` is always present (possibly empty) so that
 * `parent!=""` selects snapshots that have one; `kind` is the lower-case kind name.
 */
export function snapshotFilterAdaptor(info: SnapshotInfo): (fieldpath: string[]) => { value: string; present: boolean } {
  return (path) => {
    const none = { value: '', present: false };
    switch (path[0]) {
      case 'name': return { value: info.name, present: true };
      case 'parent': return { value: info.parent, present: true };
      case 'kind': return info.kind === Kind.Unknown ? none : { value: kindName(info.kind), present: true };
      case 'labels': {
        const key = path.slice(1).join('.');
        return Object.prototype.hasOwnProperty.call(info.labels, key) ? { value: info.labels[key]!, present: true } : none;
      }
      default: return none;
    }
  };
}

/** Snapshotters that can reclaim storage of removed snapshots (overlayfs, proxies). */
export interface Cleaner {
  cleanup(ctx: RequestContext): Promise<void>;
}

export const isCleaner = (s: unknown): s is Cleaner => typeof (s as Partial<Cleaner> | undefined)?.cleanup === 'function';
