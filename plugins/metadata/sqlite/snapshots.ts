/**
 * Namespaced snapshots over each snapshotter plugin (containerd's metadata/snapshot.go).
 *
 * Clients see their own keys per namespace; a backend sees keys `<ns>/<seq>/<key>`, where
 * seq is a per-(namespace, snapshotter) sequence that advances with every attempt, so two
 * namespaces (or a reused key) never collide in the backend. Only the inherited labels
 * (`containerd.io/snapshot.ref`, `containerd.io/snapshot/*`) reach the backend; all labels
 * are kept here, and Stat/Walk merge both (local wins).
 *
 * Remove only deletes the metadata record: the backend snapshot stays until garbage
 * collection finds it referenced by no namespace and removes it (children first), followed
 * by the backend's cleanup. Every mutation of one snapshotter runs under one lock, which the
 * collector also takes, so a backend snapshot created but not yet recorded is never swept.
 */
import type { Database, Statement } from 'better-sqlite3';
import {
  AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError,
  isAlreadyExists, isFailedPrecondition, isNotFound, isNotImplemented, messageOf,
} from '../../../core/errdefs/errdefs.js';
import { parseFilters } from '../../../core/filters/filters.js';
import { contentRefs, GcLabel, snapshotRefs, validateLabels } from '../../../core/metadata/labels.js';
import type { GcNode, GcSource, Labels, Metadata, NamespaceResource } from '../../../core/metadata/metadata.js';
import type { Logger } from '../../../core/log/logger.js';
import type { Mount } from '../../../core/mount/types.js';
import { namespaceRequired, type RequestContext } from '../../../core/namespaces/namespaces.js';
import { Mutex } from '../../../core/snapshots/mutex.js';
import {
  inheritedLabels, isCleaner, Kind, SnapshotLabel, snapshotFilterAdaptor,
  type SnapshotInfo, type SnapshotOptions, type Snapshotter, type Usage,
} from '../../../core/snapshots/snapshotter.js';
import { applyLabelPaths, decodeLabels, encodeLabels } from '../../../core/snapshots/storage.js';
import { LeaseTables } from './leases.js';

interface Row {
  key: string;
  backend_key: string;
  parent: string;
  kind: number;
  labels: string;
  created_at: number;
  updated_at: number;
}

/** Rows read per step of a Walk (containerd reads its bucket in batches of 100 too). */
const WALK_BATCH = 100;

class Statements {
  private static readonly cache = new WeakMap<Database, Statements>();
  static of(db: Database): Statements {
    let s = Statements.cache.get(db);
    if (!s) Statements.cache.set(db, (s = new Statements(db)));
    return s;
  }

  readonly get: Statement<[string, string, string], Row>;
  readonly exists: Statement<[string, string, string], { one: number }>;
  readonly insert: Statement<[string, string, string, string, string, number, string, number, number]>;
  readonly delete: Statement<[string, string, string]>;
  readonly hasChild: Statement<[string, string, string], { one: number }>;
  readonly setLabels: Statement<[string, number, string, string, string]>;
  readonly page: Statement<[string, string, string], Row>;
  readonly nextSeq: Statement<[string, string], { value: number }>;
  readonly backendKeys: Statement<[string], { backend_key: string }>;
  readonly snapshottersIn: Statement<[string], { snapshotter: string }>;
  readonly roots: Statement<[], { namespace: string; snapshotter: string; key: string }>;
  readonly all: Statement<[], { namespace: string; snapshotter: string; key: string }>;
  readonly refs: Statement<[string, string, string], { parent: string; labels: string }>;

  private constructor(db: Database) {
    const cols = 'key, backend_key, parent, kind, labels, created_at, updated_at';
    this.get = db.prepare(`SELECT ${cols} FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?`);
    this.exists = db.prepare('SELECT 1 AS one FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?');
    this.insert = db.prepare(`INSERT INTO snapshots (namespace, snapshotter, key, backend_key, parent, kind, labels, created_at, updated_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    this.delete = db.prepare('DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?');
    this.hasChild = db.prepare('SELECT 1 AS one FROM snapshots WHERE namespace = ? AND snapshotter = ? AND parent = ? LIMIT 1');
    this.setLabels = db.prepare('UPDATE snapshots SET labels = ?, updated_at = ? WHERE namespace = ? AND snapshotter = ? AND key = ?');
    this.page = db.prepare(`SELECT ${cols} FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key > ? ORDER BY key LIMIT ${WALK_BATCH}`);
    this.nextSeq = db.prepare(`INSERT INTO sequences (namespace, name, value) VALUES (?, ?, 1)
      ON CONFLICT (namespace, name) DO UPDATE SET value = value + 1 RETURNING value`);
    this.backendKeys = db.prepare('SELECT backend_key FROM snapshots WHERE snapshotter = ?');
    this.snapshottersIn = db.prepare('SELECT DISTINCT snapshotter FROM snapshots WHERE namespace = ? ORDER BY snapshotter');
    this.roots = db.prepare(`SELECT namespace, snapshotter, key FROM snapshots
      WHERE json_extract(labels, '$."${GcLabel.root}"') IS NOT NULL`);
    this.all = db.prepare('SELECT namespace, snapshotter, key FROM snapshots');
    this.refs = db.prepare('SELECT parent, labels FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?');
  }
}

const sequenceName = (snapshotter: string) => `snapshots/${snapshotter}`;
const leaseType = (snapshotter: string) => `snapshots/${snapshotter}`;

/** Backend info with the local name, parent, timestamps and labels laid over it. */
function overlayInfo(backend: SnapshotInfo, local: { name: string; parent: string; labels: Labels; createdAt: Date; updatedAt: Date }): SnapshotInfo {
  return {
    kind: backend.kind,
    name: local.name,
    parent: local.parent,
    createdAt: local.createdAt,
    updatedAt: local.updatedAt,
    labels: { ...backend.labels, ...local.labels },
  };
}

function checkLabels(labels: Labels | undefined): void {
  try {
    validateLabels(labels);
  } catch (err) {
    throw new InvalidArgumentError(`info.Labels: ${messageOf(err).replace(/: invalid argument$/, '')}`);
  }
}

/** One backend snapshotter seen through the metadata store. */
export class MetadataSnapshotter implements Snapshotter {
  private readonly q: Statements;
  private readonly leases: LeaseTables;
  /** Serialises this snapshotter's mutations with each other and with its collection. */
  readonly lock = new Mutex();

  constructor(
    private readonly metadata: Metadata,
    readonly name: string,
    readonly backend: Snapshotter,
    private readonly gc: SnapshotGc,
    private readonly log?: Logger,
  ) {
    this.q = Statements.of(metadata.db);
    this.leases = LeaseTables.of(metadata.db);
  }

  private row(ns: string, key: string): Row {
    const r = this.q.get.get(ns, this.name, key);
    if (!r) throw new NotFoundError(`snapshot ${key} does not exist`);
    return r;
  }

  private localOf(r: Row) {
    return { name: r.key, parent: r.parent, labels: decodeLabels(r.labels), createdAt: new Date(r.created_at), updatedAt: new Date(r.updated_at) };
  }

  async stat(ctx: RequestContext, key: string): Promise<SnapshotInfo> {
    const ns = namespaceRequired(ctx);
    const r = this.row(ns, key);
    const info = await this.backend.stat(ctx, r.backend_key);
    return overlayInfo(info, this.localOf(r));
  }

  async update(ctx: RequestContext, info: Pick<SnapshotInfo, 'name' | 'labels'>, fieldpaths?: readonly string[]): Promise<SnapshotInfo> {
    const ns = namespaceRequired(ctx);
    if (!info.name) throw new InvalidArgumentError('invalid argument');
    return this.lock.run(async () => {
      const r = this.row(ns, info.name);
      const local = this.localOf(r);
      local.labels = applyLabelPaths(local.labels, info.labels, fieldpaths, info.name);
      checkLabels(local.labels);
      // The backend gets only what it may see, under the caller's own field paths.
      const backendInfo = await this.backend.update(ctx, { name: r.backend_key, labels: inheritedLabels(local.labels) }, fieldpaths);
      const now = Date.now();
      const encoded = encodeLabels(local.labels);
      this.metadata.transaction(() => this.q.setLabels.run(encoded, now, ns, this.name, info.name));
      return overlayInfo(backendInfo, { ...local, labels: decodeLabels(encoded), updatedAt: new Date(now) });
    });
  }

  private backendKey(ctx: RequestContext, key: string): string {
    return this.row(namespaceRequired(ctx), key).backend_key;
  }

  async usage(ctx: RequestContext, key: string): Promise<Usage> {
    return this.backend.usage(ctx, this.backendKey(ctx, key));
  }

  async mounts(ctx: RequestContext, key: string): Promise<Mount[]> {
    return this.backend.mounts(ctx, this.backendKey(ctx, key));
  }

  prepare(ctx: RequestContext, key: string, parent: string, opts?: SnapshotOptions): Promise<Mount[]> {
    return this.createSnapshot(ctx, key, parent, false, opts?.labels ?? {});
  }

  view(ctx: RequestContext, key: string, parent: string, opts?: SnapshotOptions): Promise<Mount[]> {
    return this.createSnapshot(ctx, key, parent, true, opts?.labels ?? {});
  }

  private async createSnapshot(ctx: RequestContext, key: string, parent: string, readonly: boolean, labels: Labels): Promise<Mount[]> {
    const ns = namespaceRequired(ctx);
    // containerd fails an empty key in bolt, unclassified.
    if (!key) throw new Error('bucket name required');
    checkLabels(labels);
    const target = labels[SnapshotLabel.ref] ?? '';
    return this.lock.run(async () => {
      // 1. Check names and take a sequence number (kept even if the backend then fails).
      let bparent = '';
      let bkey = '';
      this.metadata.transaction(() => {
        this.metadata.namespaces.ensure(ns);
        if (target && this.q.exists.get(ns, this.name, target)) throw new AlreadyExistsError(`target snapshot ${JSON.stringify(target)}`);
        if (this.q.exists.get(ns, this.name, key)) throw new AlreadyExistsError(`snapshot ${JSON.stringify(key)}`);
        if (parent) {
          const p = this.q.get.get(ns, this.name, parent);
          if (!p) throw new NotFoundError(`parent snapshot ${parent} does not exist`);
          bparent = p.backend_key;
        }
        bkey = `${ns}/${this.q.nextSeq.get(ns, sequenceName(this.name))!.value}/${key}`;
      });

      // 2. The backend snapshot.
      const bopts = { labels: inheritedLabels(labels) };
      let mounts: Mount[] = [];
      let created = '';
      let failure: Error | undefined;
      let record = { key, bkey, bparent, kind: readonly ? Kind.View : Kind.Active, labels, createdAt: 0, updatedAt: 0 };
      try {
        mounts = readonly ? await this.backend.view(ctx, bkey, bparent, bopts) : await this.backend.prepare(ctx, bkey, bparent, bopts);
        created = bkey;
        record.createdAt = record.updatedAt = Date.now();
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        // A remote snapshotter already has the layer: record its committed snapshot under the
        // target name and tell the client it exists.
        // (No cause attached: the error must classify as UNKNOWN, not as the backend's class.)
        if (!target) throw new Error(`unexpected error from snapshotter: ${messageOf(err)}: unknown`);
        let found: SnapshotInfo | undefined;
        try {
          await this.backend.walk(ctx, (i) => {
            if (!found && i.kind === Kind.Committed && i.labels[SnapshotLabel.ref] === target && i.parent === bparent) found = i;
          }, [`labels."${SnapshotLabel.ref}"==${target},parent==${JSON.stringify(bparent)}`]);
        } catch (walkErr) {
          throw new Error(`failed walking backend snapshots: ${messageOf(walkErr)}`, { cause: walkErr });
        }
        if (!found) throw new NotFoundError(`target snapshot ${JSON.stringify(target)} in backend`);
        record = {
          key: target, bkey: found.name, bparent: found.parent, kind: Kind.Committed,
          labels: { ...found.labels, ...labels },
          createdAt: found.createdAt.getTime(), updatedAt: found.updatedAt.getTime(),
        };
        failure = new AlreadyExistsError(`target snapshot ${JSON.stringify(target)} from snapshotter`);
      }

      // 3. The record, under the request's lease.
      try {
        this.metadata.transaction(() => {
          this.leases.addToLease(ctx, ns, leaseType(this.name), record.key);
          if (this.q.exists.get(ns, this.name, record.key)) {
            failure ??= new AlreadyExistsError(`snapshot ${JSON.stringify(record.key)}`);
            return;
          }
          if (parent) {
            const p = this.q.get.get(ns, this.name, parent);
            if (!p) throw new NotFoundError(`parent snapshot ${parent} does not exist`);
            if (p.backend_key !== record.bparent) throw new InvalidArgumentError(`mismatched parent ${parent} from target ${target}`);
          }
          this.q.insert.run(ns, this.name, record.key, record.bkey, parent, record.kind, encodeLabels(record.labels), record.createdAt, record.updatedAt);
        });
      } catch (err) {
        failure = err as Error;
      }
      if (failure) {
        if (created) {
          await this.backend.remove(ctx, created).catch((err) =>
            this.log?.error('failed to cleanup unreferenced snapshot', { snapshotter: this.name, key: created, error: messageOf(err) }));
        }
        throw failure;
      }
      this.metadata.markMutation();
      return mounts;
    });
  }

  async commit(ctx: RequestContext, name: string, key: string, opts?: SnapshotOptions): Promise<void> {
    const ns = namespaceRequired(ctx);
    if (!name) throw new Error('bucket name required');
    const labels = opts?.labels ?? {};
    checkLabels(labels);
    await this.lock.run(async () => {
      let bkey = '';
      let nameKey = '';
      let parent = '';
      this.metadata.transaction(() => {
        if (this.q.exists.get(ns, this.name, name)) throw new AlreadyExistsError(`snapshot ${JSON.stringify(name)}`);
        if (ctx.lease && !this.leases.get.get(ns, ctx.lease)) throw new NotFoundError('lease does not exist');
        const r = this.row(ns, key);
        bkey = r.backend_key;
        parent = r.parent;
        nameKey = `${ns}/${this.q.nextSeq.get(ns, sequenceName(this.name))!.value}/${name}`;
      });
      try {
        await this.backend.commit(ctx, nameKey, bkey, { labels: inheritedLabels(labels) });
      } catch (err) {
        if (isNotFound(err)) {
          this.log?.error('uncommittable snapshot: missing in backend, snapshot should be removed', { snapshotter: this.name, key, error: messageOf(err) });
        }
        throw err;
      }
      try {
        this.metadata.transaction(() => {
          this.leases.addToLease(ctx, ns, leaseType(this.name), name);
          const now = Date.now();
          this.q.insert.run(ns, this.name, name, nameKey, parent, Kind.Committed, encodeLabels(labels), now, now);
          this.q.delete.run(ns, this.name, key);
          this.leases.removeFromLease(ctx, ns, leaseType(this.name), key);
        });
      } catch (err) {
        this.log?.error('uncommittable snapshot: transaction failed after commit, snapshot should be removed', { snapshotter: this.name, key, bname: nameKey, error: messageOf(err) });
        throw err;
      }
      this.metadata.markMutation();
    });
  }

  async remove(ctx: RequestContext, key: string): Promise<void> {
    const ns = namespaceRequired(ctx);
    await this.lock.run(() => {
      this.metadata.transaction(() => {
        if (!this.q.exists.get(ns, this.name, key)) throw new NotFoundError(`snapshot ${key} does not exist`);
        if (this.q.hasChild.get(ns, this.name, key)) throw new FailedPreconditionError('cannot remove snapshot with child');
        this.q.delete.run(ns, this.name, key);
        this.leases.removeFromLease(ctx, ns, leaseType(this.name), key);
      });
    });
    // The backend snapshot is left for the collector.
    this.gc.markDirty(this.name);
    this.metadata.markDeletion();
  }

  async walk(ctx: RequestContext, fn: (info: SnapshotInfo) => void | Promise<void>, filters?: readonly string[]): Promise<void> {
    const ns = namespaceRequired(ctx);
    const filter = parseFilters(filters);
    let last = '';
    for (;;) {
      const rows = this.q.page.all(ns, this.name, last);
      if (!rows.length) return;
      last = rows[rows.length - 1]!.key;
      for (const r of rows) {
        let info: SnapshotInfo;
        try {
          info = await this.backend.stat(ctx, r.backend_key);
        } catch (err) {
          if (isNotFound(err)) continue;
          throw err;
        }
        const merged = overlayInfo(info, this.localOf(r));
        if (filter.match(snapshotFilterAdaptor(merged))) await fn(merged);
      }
      if (rows.length < WALK_BATCH) return;
    }
  }

  /**
   * Removes backend snapshots that no namespace records any more, children before their
   * parents, then lets the backend reclaim space (Cleanup), as containerd's collector does.
   * Returns how many backend snapshots went.
   */
  async garbageCollect(): Promise<number> {
    const removedCount = await this.lock.run(async () => {
      const ctx: RequestContext = {};
      const seen = new Set(this.q.backendKeys.all(this.name).map((r) => r.backend_key));
      const infos = new Map<string, SnapshotInfo>();
      await this.backend.walk(ctx, (info) => {
        infos.set(info.name, info);
      });
      const children = new Map<string, string[]>();
      const roots: string[] = [];
      for (const info of infos.values()) {
        if (info.parent && infos.has(info.parent)) {
          const list = children.get(info.parent) ?? [];
          list.push(info.name);
          children.set(info.parent, list);
        } else {
          roots.push(info.name);
        }
      }
      let removed = 0;
      const prune = async (name: string): Promise<void> => {
        for (const child of children.get(name) ?? []) await prune(child);
        if (seen.has(name)) return;
        try {
          await this.backend.remove(ctx, name);
          removed++;
        } catch (err) {
          if (!isFailedPrecondition(err) && !isNotFound(err)) throw err;
          this.log?.warn('failed to remove snapshot', { snapshotter: this.name, key: name, error: messageOf(err) });
        }
      };
      for (const root of roots) await prune(root);
      return removed;
    });
    // Reclaiming space (deleting directories) runs outside the lock, as in containerd: a
    // Prepare arriving meanwhile must not wait for a removed container's tree to go.
    if (isCleaner(this.backend)) {
      try {
        await this.backend.cleanup({});
      } catch (err) {
        if (!isNotImplemented(err)) throw err;
      }
    }
    return removedCount;
  }

  async close(): Promise<void> {
    await this.gc.idle();
    await this.backend.close();
  }
}

/**
 * The gc source for snapshot records of every snapshotter: roots are snapshots labelled
 * `containerd.io/gc.root`; edges go to the parent and to label references. After a sweep
 * the affected backends are pruned.
 */
export class SnapshotGc implements GcSource, NamespaceResource {
  readonly kind = 'snapshot' as const;
  private readonly q: Statements;
  readonly snapshotters = new Map<string, MetadataSnapshotter>();
  /** Snapshotters whose backend may hold unreferenced snapshots; all of them at boot. */
  private dirty: Set<string> | 'all' = 'all';
  /** Backend pruning in progress (never rejects). */
  private pruning: Promise<void> = Promise.resolve();

  constructor(db: Database, private readonly log?: Logger) {
    this.q = Statements.of(db);
  }

  markDirty(snapshotter: string): void {
    if (this.dirty !== 'all') this.dirty.add(snapshotter);
  }

  holdings(namespace: string): string[] {
    return this.q.snapshottersIn.all(namespace).map((r) => `snapshots on ${JSON.stringify(r.snapshotter)} snapshotter`);
  }

  *roots(): Iterable<GcNode> {
    for (const r of this.q.roots.iterate()) yield { kind: 'snapshot', namespace: r.namespace, id: `${r.snapshotter}/${r.key}` };
  }

  *references(node: GcNode): Iterable<GcNode> {
    const slash = node.id.indexOf('/');
    if (slash <= 0) return;
    const snapshotter = node.id.slice(0, slash);
    const key = node.id.slice(slash + 1);
    const r = this.q.refs.get(node.namespace, snapshotter, key);
    if (!r) return;
    const flat = node.flat ? { flat: true } : {};
    if (r.parent) yield { kind: 'snapshot', namespace: node.namespace, id: `${snapshotter}/${r.parent}`, ...flat };
    if (node.flat) return;
    const labels = decodeLabels(r.labels);
    for (const digest of contentRefs(labels)) yield { kind: 'content', namespace: node.namespace, id: digest };
    for (const s of snapshotRefs(labels)) yield { kind: 'snapshot', namespace: node.namespace, id: `${s.snapshotter}/${s.key}` };
  }

  *all(): Iterable<GcNode> {
    for (const r of this.q.all.iterate()) yield { kind: 'snapshot', namespace: r.namespace, id: `${r.snapshotter}/${r.key}` };
  }

  remove(nodes: GcNode[]): void {
    for (const n of nodes) {
      const slash = n.id.indexOf('/');
      const snapshotter = n.id.slice(0, slash);
      this.q.delete.run(n.namespace, snapshotter, n.id.slice(slash + 1));
      this.markDirty(snapshotter);
    }
  }

  /**
   * Schedules the backend pruning of every snapshotter that may hold garbage and returns at
   * once. As in containerd, backend removal and cleanup run after the metadata sweep has
   * finished (serialised per snapshotter by its lock), so the time a collection reports —
   * which spaces the scheduler's collections — is the metadata work only.
   */
  async afterCollect(): Promise<void> {
    const names = this.dirty === 'all' ? [...this.snapshotters.keys()] : [...this.dirty];
    this.dirty = new Set();
    if (names.length) this.pruning = this.pruning.then(() => this.prune(names));
  }

  private async prune(names: readonly string[]): Promise<void> {
    await Promise.all(names.map(async (name) => {
      const sn = this.snapshotters.get(name);
      if (!sn) return;
      try {
        const removed = await sn.garbageCollect();
        if (removed) this.log?.debug('garbage collected snapshots', { snapshotter: name, removed });
      } catch (err) {
        this.markDirty(name);
        this.log?.warn('snapshot garbage collection failed', { snapshotter: name, error: messageOf(err) });
      }
    }));
  }

  /** Resolves once all backend pruning scheduled so far has finished. */
  idle(): Promise<void> {
    return this.pruning;
  }
}

/**
 * Wraps every snapshotter plugin instance for the metadata store and registers snapshots
 * with namespaces (deletion check) and the collector.
 */
export function attachSnapshotters(
  metadata: Metadata & { snapshotters: Map<string, Snapshotter> },
  backends: ReadonlyMap<string, Snapshotter>,
  log?: Logger,
): SnapshotGc {
  const gc = new SnapshotGc(metadata.db, log);
  for (const [name, backend] of backends) {
    const sn = new MetadataSnapshotter(metadata, name, backend, gc, log?.child({ snapshotter: name }));
    gc.snapshotters.set(name, sn);
    metadata.snapshotters.set(name, sn);
  }
  metadata.addNamespaceResource(gc);
  metadata.addGcSource(gc);
  return gc;
}
