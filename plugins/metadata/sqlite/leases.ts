/**
 * Leases in the metadata database: the lease manager, the helpers other stores use to put
 * what they create under the request's lease, and the lease node kind of the gc graph.
 *
 * A lease is a gc root until its `containerd.io/gc.expire` time passes; it keeps its
 * resources alive (`content` digests, `ingests` refs, `snapshots/<snapshotter>` keys). A lease
 * labelled `containerd.io/gc.flat` keeps only the resources themselves, not what their labels
 * reference.
 */
import { randomBytes } from 'node:crypto';
import type { Database, Statement } from 'better-sqlite3';
import { AlreadyExistsError, InvalidArgumentError, NotFoundError, NotImplementedError } from '../../../core/errdefs/errdefs.js';
import { digestProblem } from '../../../core/content/content.js';
import { parseFilters, recordAdaptor } from '../../../core/filters/filters.js';
import type { Lease, LeaseManager, LeaseResource } from '../../../core/leases/leases.js';
import { GcLabel, validateLabels } from '../../../core/metadata/labels.js';
import type { GcNode, GcSource, Labels, Metadata } from '../../../core/metadata/metadata.js';
import { namespaceRequired, type RequestContext } from '../../../core/namespaces/namespaces.js';
import { parseLabels, stringifyLabels } from './database.js';

interface LeaseRow { namespace: string; id: string; labels: string; created_at: number }
interface ResourceRow { type: string; id: string }

/** Prepared statements on the lease tables, shared by every store of one database. */
export class LeaseTables {
  private static readonly cache = new WeakMap<Database, LeaseTables>();

  static of(db: Database): LeaseTables {
    let t = LeaseTables.cache.get(db);
    if (!t) LeaseTables.cache.set(db, (t = new LeaseTables(db)));
    return t;
  }

  readonly get: Statement<[string, string], LeaseRow>;
  readonly list: Statement<[string], LeaseRow>;
  readonly all: Statement<[], LeaseRow>;
  readonly insert: Statement<[string, string, string, number]>;
  readonly delete: Statement<[string, string]>;
  readonly addResource: Statement<[string, string, string, string]>;
  readonly deleteResource: Statement<[string, string, string, string]>;
  readonly deleteResources: Statement<[string, string]>;
  readonly resources: Statement<[string, string], ResourceRow>;
  readonly holders: Statement<[string, string, string], { lease: string }>;

  private constructor(db: Database) {
    this.get = db.prepare('SELECT namespace, id, labels, created_at FROM leases WHERE namespace = ? AND id = ?');
    this.list = db.prepare('SELECT namespace, id, labels, created_at FROM leases WHERE namespace = ? ORDER BY id');
    this.all = db.prepare('SELECT namespace, id, labels, created_at FROM leases ORDER BY namespace, id');
    this.insert = db.prepare('INSERT INTO leases (namespace, id, labels, created_at) VALUES (?, ?, ?, ?)');
    this.delete = db.prepare('DELETE FROM leases WHERE namespace = ? AND id = ?');
    this.addResource = db.prepare('INSERT OR IGNORE INTO lease_resources (namespace, lease, type, id) VALUES (?, ?, ?, ?)');
    this.deleteResource = db.prepare('DELETE FROM lease_resources WHERE namespace = ? AND lease = ? AND type = ? AND id = ?');
    this.deleteResources = db.prepare('DELETE FROM lease_resources WHERE namespace = ? AND lease = ?');
    // containerd lists content, then ingests, then snapshots (by snapshotter), each sorted.
    this.resources = db.prepare(
      `SELECT type, id FROM lease_resources WHERE namespace = ? AND lease = ?
       ORDER BY CASE WHEN type = 'content' THEN 0 WHEN type = 'ingests' THEN 1 ELSE 2 END, type, id`,
    );
    this.holders = db.prepare('SELECT lease FROM lease_resources WHERE namespace = ? AND type = ? AND id = ?');
  }

  /**
   * Puts a resource under the request's lease, if it carries one. NOT_FOUND when that lease
   * does not exist in the namespace. Call inside the transaction creating the resource.
   */
  addToLease(ctx: RequestContext, namespace: string, type: string, id: string): boolean {
    if (!ctx.lease) return false;
    if (!this.get.get(namespace, ctx.lease)) throw new NotFoundError('lease does not exist');
    this.addResource.run(namespace, ctx.lease, type, id);
    return true;
  }

  /** Drops a resource from the request's lease (no-op without a lease). */
  removeFromLease(ctx: RequestContext, namespace: string, type: string, id: string): void {
    if (!ctx.lease) return;
    this.deleteResource.run(namespace, ctx.lease, type, id);
  }
}

/** Resource types leases hold, as stored: `content`, `ingests`, `snapshots/<snapshotter>`. */
export function parseLeaseResource(r: LeaseResource): { type: string; id: string } {
  const parts = r.type.split('/');
  switch (parts[0]) {
    case 'content':
    case 'ingests': {
      if (parts.length !== 1) throw new InvalidArgumentError(`invalid resource type ${r.type}`);
      if (parts[0] === 'content') {
        const problem = digestProblem(r.id);
        if (problem) throw new InvalidArgumentError(`invalid content resource id ${r.id}: ${problem}`);
      }
      return { type: parts[0], id: r.id };
    }
    case 'snapshots':
      if (parts.length !== 2) throw new InvalidArgumentError(`invalid snapshot resource type ${r.type}`);
      return { type: r.type, id: r.id };
    default:
      throw new NotImplementedError(`resource type ${r.type} not supported yet`);
  }
}

/** containerd's random lease id: the current second's nanoseconds, a dash, 3 random bytes in base64url. */
export function randomLeaseId(now = process.hrtime.bigint(), wall = Date.now()): string {
  // Nanoseconds within the current wall-clock second (Go's time.Now().Nanosecond()).
  const nanos = (wall % 1000) * 1_000_000 + Number(now % 1_000_000n);
  return `${nanos}-${randomBytes(3).toString('base64url')}`;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/** The expiry of a lease from its labels; undefined when absent or unparsable (then it never expires). */
export function leaseExpiry(labels: Labels): Date | undefined {
  const v = labels[GcLabel.expire];
  if (v === undefined || !RFC3339.test(v)) return undefined;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

const toLease = (r: LeaseRow): Lease => ({ id: r.id, createdAt: new Date(r.created_at), labels: parseLabels(r.labels) });

export class SqliteLeaseManager implements LeaseManager {
  private readonly t: LeaseTables;

  constructor(private readonly md: Metadata) {
    this.t = LeaseTables.of(md.db);
  }

  async create(ctx: RequestContext, id: string, labels: Labels): Promise<Lease> {
    const ns = namespaceRequired(ctx);
    validateLabels(labels);
    const leaseId = id || randomLeaseId();
    const stored = Object.fromEntries(Object.entries(labels ?? {}).filter(([, v]) => v !== ''));
    const createdAt = Date.now();
    this.md.transaction(() => {
      this.md.namespaces.ensure(ns);
      if (this.t.get.get(ns, leaseId)) throw new AlreadyExistsError(`lease ${JSON.stringify(leaseId)}`);
      this.t.insert.run(ns, leaseId, stringifyLabels(stored), createdAt);
    });
    this.md.markMutation();
    return { id: leaseId, createdAt: new Date(createdAt), labels: stored };
  }

  async delete(ctx: RequestContext, id: string): Promise<void> {
    const ns = namespaceRequired(ctx);
    this.md.transaction(() => {
      if (!this.t.get.get(ns, id)) throw new NotFoundError(`lease ${JSON.stringify(id)}`);
      this.t.delete.run(ns, id);
      this.t.deleteResources.run(ns, id);
    });
    this.md.markDeletion();
  }

  async list(ctx: RequestContext, filters: readonly string[]): Promise<Lease[]> {
    const ns = namespaceRequired(ctx);
    const filter = parseFilters(filters);
    return this.t.list.all(ns).map(toLease).filter((l) => {
      // An empty label map has no label fields at all (containerd's checkMap).
      const labels = Object.keys(l.labels).length ? l.labels : undefined;
      return filter.match(recordAdaptor({ id: l.id || undefined }, labels));
    });
  }

  async addResource(ctx: RequestContext, lease: string, resource: LeaseResource): Promise<void> {
    const ns = namespaceRequired(ctx);
    this.md.transaction(() => {
      if (!this.t.get.get(ns, lease)) throw new NotFoundError(`lease ${JSON.stringify(lease)}`);
      const r = parseLeaseResource(resource);
      this.t.addResource.run(ns, lease, r.type, r.id);
    });
    this.md.markMutation();
  }

  async deleteResource(ctx: RequestContext, lease: string, resource: LeaseResource): Promise<void> {
    const ns = namespaceRequired(ctx);
    this.md.transaction(() => {
      if (!this.t.get.get(ns, lease)) throw new NotFoundError(`lease ${JSON.stringify(lease)}`);
      const r = parseLeaseResource(resource);
      this.t.deleteResource.run(ns, lease, r.type, r.id);
    });
    this.md.markDeletion();
  }

  async listResources(ctx: RequestContext, lease: string): Promise<LeaseResource[]> {
    const ns = namespaceRequired(ctx);
    if (!this.t.get.get(ns, lease)) throw new NotFoundError(`lease ${JSON.stringify(lease)}`);
    return this.t.resources.all(ns, lease).map((r) => ({ id: r.id, type: r.type }));
  }
}

/** The lease kind of the gc graph: unexpired leases are roots holding their resources. */
export class LeaseGcSource implements GcSource {
  readonly kind = 'lease' as const;
  private readonly t: LeaseTables;
  private readonly delete;

  constructor(db: Database) {
    this.t = LeaseTables.of(db);
    this.delete = db.transaction((nodes: GcNode[]) => {
      for (const n of nodes) {
        this.t.delete.run(n.namespace, n.id);
        this.t.deleteResources.run(n.namespace, n.id);
      }
    });
  }

  *roots(now: Date): Iterable<GcNode> {
    for (const row of this.t.all.all()) {
      const exp = leaseExpiry(parseLabels(row.labels));
      if (exp && now > exp) continue;
      yield { kind: 'lease', namespace: row.namespace, id: row.id };
    }
  }

  *references(node: GcNode): Iterable<GcNode> {
    const row = this.t.get.get(node.namespace, node.id);
    if (!row) return;
    const flat = GcLabel.flat in parseLabels(row.labels);
    for (const r of this.t.resources.all(node.namespace, node.id)) {
      if (r.type === 'content') yield { kind: 'content', namespace: node.namespace, id: r.id, ...(flat ? { flat } : {}) };
      else if (r.type === 'ingests') yield { kind: 'ingest', namespace: node.namespace, id: r.id };
      else if (r.type.startsWith('snapshots/')) {
        yield { kind: 'snapshot', namespace: node.namespace, id: `${r.type.slice('snapshots/'.length)}/${r.id}`, ...(flat ? { flat } : {}) };
      }
    }
  }

  *all(): Iterable<GcNode> {
    for (const row of this.t.all.all()) yield { kind: 'lease', namespace: row.namespace, id: row.id };
  }

  remove(nodes: GcNode[]): void {
    this.delete(nodes);
  }
}

/** Attaches the lease manager and its gc source to the metadata store. */
export function attachLeases(md: Metadata): LeaseManager {
  md.addGcSource(new LeaseGcSource(md.db));
  return new SqliteLeaseManager(md);
}
