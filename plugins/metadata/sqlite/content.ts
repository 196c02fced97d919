/**
 * Namespaced content over the content plugin (the backend). The backend holds bytes once per
 * digest; this store records which namespace holds which blob (with its labels), tracks
 * ingests per namespace under backend refs `<namespace>/<seq>/<client ref>`, puts new blobs and
 * ingests under the request's lease, and takes part in garbage collection.
 *
 * Sharing policy: with "shared", a writer whose expected digest is already committed in the
 * backend (by another namespace) needs no data: its status reports offset = total = size and
 * its commit only links the blob into the namespace. With "isolated", every namespace must
 * upload the bytes itself.
 */
import type { Database } from 'better-sqlite3';
import type { Readable } from 'node:stream';
import {
  contentInfoAdaptor,
  ingestStatusAdaptor,
  type ContentInfo,
  type ContentStore,
  type ContentWriter,
  type IngestStatus,
  type WriterOptions,
} from '../../../core/content/content.js';
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError, isAlreadyExists, isNotFound } from '../../../core/errdefs/errdefs.js';
import { parseFilters } from '../../../core/filters/filters.js';
import { contentRefs, snapshotRefs, validateLabels } from '../../../core/metadata/labels.js';
import type { GcNode, GcSource, Labels, Metadata, NamespaceResource } from '../../../core/metadata/metadata.js';
import { namespaceRequired, type RequestContext } from '../../../core/namespaces/namespaces.js';
import type { Logger } from '../../../core/log/logger.js';
import { parseLabels, stringifyLabels } from './database.js';
import { LeaseTables } from './leases.js';

const DAY_MS = 24 * 60 * 60 * 1000;

/** What the metadata store can use of a backend beyond the ContentStore contract. */
interface BackendExtras {
  /** containerd's WalkStatusRefs: refs of every ingest, cheaper than listing statuses. */
  ingestRefs?(): Promise<string[]>;
  /** Age after which unleased ingests expire (the backend's stale-ingest age). */
  staleIngestAgeMs?: number;
  /** Janitor hook: whether a stale backend ingest is still wanted. */
  keepIngest?: ((ref: string, now: number) => boolean) | undefined;
}
export type ContentBackend = ContentStore & BackendExtras;

interface BlobRow { namespace: string; digest: string; size: number; labels: string; created_at: number; updated_at: number }
interface IngestRow { namespace: string; ref: string; backend_ref: string; expected: string; expires_at: number | null }

/**
 * Shared/exclusive lock between writers and the backend sweep: a blob committed to the
 * backend but not yet recorded must never look orphaned to the collector.
 */
class SharedLock {
  private readers = 0;
  private writer: Promise<void> | undefined;
  private readonly idle: (() => void)[] = [];

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    while (this.writer) await this.writer;
    this.readers++;
    try {
      return await fn();
    } finally {
      if (--this.readers === 0) for (const w of this.idle.splice(0)) w();
    }
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.writer) await this.writer;
    let release!: () => void;
    this.writer = new Promise<void>((r) => (release = r));
    try {
      while (this.readers > 0) await new Promise<void>((r) => this.idle.push(r));
      return await fn();
    } finally {
      const done = release;
      this.writer = undefined;
      done();
    }
  }
}

const toInfo = (r: BlobRow): ContentInfo => ({
  digest: r.digest,
  size: r.size,
  createdAt: new Date(r.created_at),
  updatedAt: new Date(r.updated_at),
  labels: parseLabels(r.labels),
});

const nonEmpty = (labels: Labels | undefined): Labels => Object.fromEntries(Object.entries(labels ?? {}).filter(([, v]) => v !== ''));

function validateInfoLabels(labels: Labels | undefined): void {
  try {
    validateLabels(labels);
  } catch (err) {
    throw new InvalidArgumentError(`info.Labels: ${(err as Error).message.replace(/: invalid argument$/, '')}`);
  }
}

export class SqliteContentStore implements ContentStore {
  private readonly q;
  private readonly leases: LeaseTables;
  private readonly lock = new SharedLock();
  private readonly ingestExpiryMs: number;
  /** Set when something may have left backend blobs or ingests without a record (and at start, for crash debris). */
  blobsDirty = true;
  ingestsDirty = true;

  constructor(
    private readonly md: Metadata,
    readonly backend: ContentBackend,
    private readonly shared: boolean,
    private readonly log?: Logger,
  ) {
    const db: Database = md.db;
    this.leases = LeaseTables.of(db);
    this.ingestExpiryMs = backend.staleIngestAgeMs ?? DAY_MS;
    this.q = {
      blob: db.prepare<[string, string], BlobRow>('SELECT * FROM content WHERE namespace = ? AND digest = ?'),
      blobs: db.prepare<[string], BlobRow>('SELECT * FROM content WHERE namespace = ? ORDER BY digest'),
      anyBlob: db.prepare<[string], { one: number }>('SELECT 1 AS one FROM content WHERE namespace = ? LIMIT 1'),
      insertBlob: db.prepare('INSERT INTO content (namespace, digest, size, labels, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)'),
      setLabels: db.prepare('UPDATE content SET labels = ?, updated_at = ? WHERE namespace = ? AND digest = ?'),
      deleteBlob: db.prepare('DELETE FROM content WHERE namespace = ? AND digest = ?'),
      ingest: db.prepare<[string, string], IngestRow>('SELECT * FROM ingests WHERE namespace = ? AND ref = ?'),
      ingests: db.prepare<[string], IngestRow>('SELECT * FROM ingests WHERE namespace = ? ORDER BY ref'),
      ingestByBackendRef: db.prepare<[string], IngestRow>('SELECT * FROM ingests WHERE backend_ref = ?'),
      insertIngest: db.prepare('INSERT INTO ingests (namespace, ref, backend_ref, expected, expires_at) VALUES (?, ?, ?, \'\', NULL)'),
      setIngestExpiry: db.prepare('UPDATE ingests SET expires_at = ? WHERE namespace = ? AND ref = ?'),
      setIngestExpected: db.prepare('UPDATE ingests SET expected = ? WHERE namespace = ? AND ref = ?'),
      deleteIngest: db.prepare('DELETE FROM ingests WHERE namespace = ? AND ref = ?'),
      keepDigests: db.prepare<[], { digest: string }>("SELECT digest FROM content UNION SELECT expected AS digest FROM ingests WHERE expected != ''"),
      backendRefs: db.prepare<[], { backend_ref: string }>('SELECT backend_ref FROM ingests'),
      leasedIngest: db.prepare<[string, string], { one: number }>(
        "SELECT 1 AS one FROM lease_resources r JOIN leases l ON l.namespace = r.namespace AND l.id = r.lease WHERE r.namespace = ? AND r.type = 'ingests' AND r.id = ? LIMIT 1",
      ),
    };
  }

  // ---------------------------------------------------------------- blobs

  async info(ctx: RequestContext, digest: string): Promise<ContentInfo> {
    const ns = namespaceRequired(ctx);
    const row = this.q.blob.get(ns, digest);
    if (!row) throw new NotFoundError(`content digest ${digest}`);
    return toInfo(row);
  }

  async update(ctx: RequestContext, digest: string, labels: Labels, fieldpaths: readonly string[]): Promise<ContentInfo> {
    const ns = namespaceRequired(ctx);
    const info = await this.lock.shared(async () =>
      this.md.transaction(() => {
        const row = this.q.blob.get(ns, digest);
        if (!row) throw new NotFoundError(`content digest ${digest}`);
        const current = toInfo(row);
        let next: Labels;
        if (fieldpaths.length === 0) {
          next = { ...labels };
        } else {
          next = { ...current.labels };
          for (const p of fieldpaths) {
            if (p.startsWith('labels.')) {
              const key = p.slice('labels.'.length);
              next[key] = labels?.[key] ?? '';
            } else if (p === 'labels') {
              next = { ...labels };
            } else {
              throw new InvalidArgumentError(`cannot update ${JSON.stringify(p)} field on content info ${JSON.stringify(digest)}`);
            }
          }
        }
        validateInfoLabels(next);
        next = nonEmpty(next);
        const updatedAt = Date.now();
        this.q.setLabels.run(stringifyLabels(next), updatedAt, ns, digest);
        return { ...current, labels: next, updatedAt: new Date(updatedAt) };
      }),
    );
    this.md.markMutation();
    return info;
  }

  async *list(ctx: RequestContext, filters: readonly string[]): AsyncIterable<ContentInfo> {
    const ns = namespaceRequired(ctx);
    const filter = parseFilters(filters);
    for (const row of this.q.blobs.all(ns)) {
      const info = toInfo(row);
      if (filter.match(contentInfoAdaptor(info))) yield info;
    }
  }

  async delete(ctx: RequestContext, digest: string): Promise<void> {
    const ns = namespaceRequired(ctx);
    await this.lock.shared(async () =>
      this.md.transaction(() => {
        if (!this.q.blob.get(ns, digest)) throw new NotFoundError(`content digest ${digest}`);
        this.q.deleteBlob.run(ns, digest);
        this.leases.removeFromLease(ctx, ns, 'content', digest);
        this.blobsDirty = true;
      }),
    );
  }

  async read(ctx: RequestContext, digest: string, offset?: number, length?: number): Promise<Readable> {
    const ns = namespaceRequired(ctx);
    if (!this.q.blob.get(ns, digest)) throw new NotFoundError(`content digest ${digest}`);
    return this.backend.read(ctx, digest, offset, length);
  }

  async readBytes(ctx: RequestContext, digest: string, offset?: number, length?: number): Promise<Buffer | undefined> {
    const ns = namespaceRequired(ctx);
    if (!this.q.blob.get(ns, digest)) throw new NotFoundError(`content digest ${digest}`);
    return this.backend.readBytes?.(ctx, digest, offset, length);
  }

  // ---------------------------------------------------------------- ingests

  async status(ctx: RequestContext, ref: string): Promise<IngestStatus> {
    const ns = namespaceRequired(ctx);
    const row = this.q.ingest.get(ns, ref);
    if (!row) throw new NotFoundError(`reference ${ref}`);
    try {
      const st = await this.backend.status(ctx, row.backend_ref);
      return { ...st, ref };
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(`reference ${ref}`, { cause: err });
      throw err;
    }
  }

  async listStatuses(ctx: RequestContext, filters: readonly string[]): Promise<IngestStatus[]> {
    const ns = namespaceRequired(ctx);
    const filter = parseFilters(filters);
    const out: IngestStatus[] = [];
    for (const row of this.q.ingests.all(ns)) {
      let st: IngestStatus;
      try {
        st = { ...(await this.backend.status(ctx, row.backend_ref)), ref: row.ref };
      } catch (err) {
        if (isNotFound(err)) continue;
        throw err;
      }
      if (filter.match(ingestStatusAdaptor(st))) out.push(st);
    }
    return out;
  }

  async abort(ctx: RequestContext, ref: string): Promise<void> {
    const ns = namespaceRequired(ctx);
    await this.lock.shared(async () => {
      const row = this.md.transaction(() => {
        const r = this.q.ingest.get(ns, ref);
        if (!r || !r.backend_ref) throw new NotFoundError(`reference ${ref}`);
        this.q.deleteIngest.run(ns, ref);
        this.leases.removeFromLease(ctx, ns, 'ingests', ref);
        return r;
      });
      // A shared ingest (expected set) never wrote to the backend under its ref.
      if (!row.expected) {
        await this.backend.abort(ctx, row.backend_ref).catch((err) => {
          if (!isNotFound(err)) throw err;
        });
      } else {
        this.ingestsDirty = true;
      }
    });
    this.md.markMutation();
  }

  async writer(ctx: RequestContext, opts: WriterOptions): Promise<ContentWriter> {
    const ref = opts.ref;
    if (!ref) throw new InvalidArgumentError('ref must not be empty');
    const ns = namespaceRequired(ctx);
    let total = opts.total ?? 0;
    const expected = opts.expected ?? '';
    return this.lock.shared(async () => {
      if (expected && this.q.blob.get(ns, expected)) {
        // Already here: hold it under the lease so a concurrent removal cannot take it.
        this.md.transaction(() => {
          try {
            this.leases.addToLease(ctx, ns, 'content', expected);
          } catch (err) {
            throw new NotFoundError(`unable to lease content: ${(err as Error).message}`, { cause: err });
          }
        });
        throw new AlreadyExistsError(`content ${expected}`);
      }
      let shared = false;
      if (expected && this.shared) {
        try {
          const bi = await this.backend.info(ctx, expected);
          // A size mismatch is left for the commit to report.
          if (total === 0 || total === bi.size) {
            shared = true;
            total = bi.size;
          }
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
      }
      const { bref, created } = this.md.transaction(() => {
        this.md.namespaces.ensure(ns);
        let row = this.q.ingest.get(ns, ref);
        const isNew = !row;
        if (!row) {
          // containerd numbers backend refs per ingest record, so a new record starts at 1.
          this.q.insertIngest.run(ns, ref, `${ns}/1/${ref}`);
          row = this.q.ingest.get(ns, ref)!;
        }
        const leased = this.leases.addToLease(ctx, ns, 'ingests', ref);
        // Unleased ingests expire; a lease keeps its ingests until it goes.
        if (!leased) this.q.setIngestExpiry.run(Date.now() + this.ingestExpiryMs, ns, ref);
        if (shared) this.q.setIngestExpected.run(expected, ns, ref);
        return { bref: row.backend_ref, created: isNew };
      });
      let backendWriter: ContentWriter | undefined;
      if (!shared) {
        try {
          // The expected digest was checked against this namespace; the backend must not short-cut it.
          backendWriter = await this.backend.writer(ctx, { ref: bref, total });
        } catch (err) {
          if (created) this.md.transaction(() => {
            this.q.deleteIngest.run(ns, ref);
            this.leases.removeFromLease(ctx, ns, 'ingests', ref);
          });
          throw err;
        }
      }
      return new NamespacedWriter(this, ctx, ns, ref, bref, backendWriter, { size: total, digest: shared ? expected : '' });
    });
  }

  /** Records a committed blob in the namespace (called by NamespacedWriter.commit). */
  async commitWriter(w: NamespacedWriter, size: number, expected: string, labels: Labels | undefined): Promise<void> {
    try {
      validateInfoLabels(labels);
    } catch (err) {
      await w.backendWriter?.close();
      throw err;
    }
    const { ns, ref, ctx } = w;
    let exists: Error | undefined;
    await this.lock.shared(async () => {
      let actual: string;
      let finalSize: number;
      const bw = w.backendWriter;
      if (!bw) {
        if (size !== 0 && size !== w.desc.size) {
          throw new FailedPreconditionError(`${JSON.stringify(ref)} failed size validation: ${w.desc.size} != ${size}`);
        }
        if (expected && expected !== w.desc.digest) throw new FailedPreconditionError(`${JSON.stringify(ref)} unexpected digest`);
        finalSize = w.desc.size;
        actual = w.desc.digest;
      } else {
        const st = bw.status();
        if (size !== 0 && size !== st.offset) {
          await bw.close();
          throw new FailedPreconditionError(`${JSON.stringify(ref)} failed size validation: ${st.offset} != ${size}`);
        }
        finalSize = st.offset;
        try {
          await bw.commit(finalSize, expected);
        } catch (err) {
          if (!isAlreadyExists(err)) throw err;
        }
        actual = await bw.digest();
      }
      this.md.transaction(() => {
        this.md.namespaces.ensure(ns);
        if (this.q.blob.get(ns, actual)) {
          exists = new AlreadyExistsError(`content ${actual}`);
        } else {
          const now = Date.now();
          this.q.insertBlob.run(ns, actual, finalSize, stringifyLabels(nonEmpty(labels)), now, now);
        }
        this.q.deleteIngest.run(ns, ref);
        this.leases.removeFromLease(ctx, ns, 'ingests', ref);
        this.leases.addToLease(ctx, ns, 'content', actual);
      });
    });
    this.md.markMutation();
    if (exists) throw exists;
  }

  // ---------------------------------------------------------------- namespaces and gc

  /** What a namespace still holds of content (it cannot be deleted while it holds blobs). */
  readonly namespaceResource: NamespaceResource = {
    holdings: (namespace) => (this.q.anyBlob.get(namespace) ? ['blobs'] : []),
  };

  /** Whether the backend's janitor must keep a stale ingest: it is leased or its record has not expired. */
  keepBackendIngest(bref: string, now: number): boolean {
    const row = this.q.ingestByBackendRef.get(bref);
    if (!row) return false;
    if (row.expires_at === null || row.expires_at > now) return true;
    return !!this.q.leasedIngest.get(row.namespace, row.ref);
  }

  /** Deletes backend blobs no namespace records and no shared ingest expects. */
  async sweepBlobs(force = false): Promise<number> {
    if (!force && !this.blobsDirty) return 0;
    return this.lock.exclusive(async () => {
      this.blobsDirty = false;
      const keep = new Set(this.q.keepDigests.all().map((r) => r.digest));
      let removed = 0;
      const bctx: RequestContext = {};
      const dead: string[] = [];
      for await (const info of this.backend.list(bctx, [])) if (!keep.has(info.digest)) dead.push(info.digest);
      for (const d of dead) {
        try {
          await this.backend.delete(bctx, d);
          removed++;
          this.log?.debug('removed content', { digest: d });
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
      }
      return removed;
    });
  }

  /** Aborts backend ingests no namespace records. */
  async sweepIngests(force = false): Promise<number> {
    if (!force && !this.ingestsDirty) return 0;
    return this.lock.exclusive(async () => {
      this.ingestsDirty = false;
      const keep = new Set(this.q.backendRefs.all().map((r) => r.backend_ref));
      const bctx: RequestContext = {};
      const refs = this.backend.ingestRefs
        ? await this.backend.ingestRefs()
        : (await this.backend.listStatuses(bctx, [])).map((s) => s.ref);
      let removed = 0;
      for (const ref of refs) {
        if (keep.has(ref)) continue;
        try {
          await this.backend.abort(bctx, ref);
          removed++;
          this.log?.debug('cleanup aborting ingest', { ref });
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
      }
      return removed;
    });
  }
}

/** A writer in a namespace: a backend writer, or (shared blob) none until data arrives. */
export class NamespacedWriter implements ContentWriter {
  private readonly started = new Date();

  constructor(
    private readonly store: SqliteContentStore,
    readonly ctx: RequestContext,
    readonly ns: string,
    readonly ref: string,
    private readonly bref: string,
    public backendWriter: ContentWriter | undefined,
    readonly desc: { size: number; digest: string },
  ) {}

  status(): IngestStatus {
    if (this.backendWriter) return { ...this.backendWriter.status(), ref: this.ref };
    return {
      ref: this.ref,
      offset: this.desc.size,
      total: this.desc.size,
      expected: this.desc.digest,
      startedAt: this.started,
      updatedAt: this.started,
    };
  }

  digest(): Promise<string> {
    return this.backendWriter ? this.backendWriter.digest() : Promise.resolve(this.desc.digest);
  }

  async write(data: Uint8Array): Promise<void> {
    if (!this.backendWriter) {
      if (data.length === 0) return;
      await this.unshare(this.desc.size);
    }
    await this.backendWriter!.write(data);
  }

  async truncate(): Promise<void> {
    if (this.backendWriter) return this.backendWriter.truncate();
    await this.unshare(0);
  }

  /** Starts a real backend ingest, seeded with the first `size` bytes of the shared blob. */
  private async unshare(size: number): Promise<void> {
    const backend = this.store.backend;
    const w = await backend.writer(this.ctx, { ref: this.bref, total: this.desc.size });
    try {
      if (w.status().offset > 0) await w.truncate();
      if (size > 0) {
        const src = await backend.read(this.ctx, this.desc.digest, 0, size);
        for await (const chunk of src) await w.write(chunk as Buffer);
      }
    } catch (err) {
      await w.close();
      throw err;
    }
    this.backendWriter = w;
  }

  commit(size: number, expected: string, labels?: Labels): Promise<void> {
    return this.store.commitWriter(this, size, expected || '', labels);
  }

  async close(): Promise<void> {
    await this.backendWriter?.close();
  }
}

/** The content node kind: gc.root-labelled blobs are roots; label references are edges. */
export class ContentGcSource implements GcSource {
  readonly kind = 'content' as const;
  private readonly q;

  constructor(db: Database, private readonly store: SqliteContentStore) {
    this.q = {
      roots: db.prepare<[], { namespace: string; digest: string }>(
        `SELECT namespace, digest FROM content WHERE json_extract(labels, '$."containerd.io/gc.root"') IS NOT NULL`,
      ),
      labels: db.prepare<[string, string], { labels: string }>('SELECT labels FROM content WHERE namespace = ? AND digest = ?'),
      all: db.prepare<[], { namespace: string; digest: string }>('SELECT namespace, digest FROM content'),
      delete: db.prepare('DELETE FROM content WHERE namespace = ? AND digest = ?'),
    };
  }

  *roots(): Iterable<GcNode> {
    for (const r of this.q.roots.all()) yield { kind: 'content', namespace: r.namespace, id: r.digest };
  }

  *references(node: GcNode): Iterable<GcNode> {
    // Flat (held by a gc.flat lease): keep the blob, not what it points to.
    if (node.flat) return;
    const row = this.q.labels.get(node.namespace, node.id);
    if (!row) return;
    const labels = parseLabels(row.labels);
    for (const d of contentRefs(labels)) yield { kind: 'content', namespace: node.namespace, id: d };
    for (const s of snapshotRefs(labels)) yield { kind: 'snapshot', namespace: node.namespace, id: `${s.snapshotter}/${s.key}` };
  }

  *all(): Iterable<GcNode> {
    for (const r of this.q.all.all()) yield { kind: 'content', namespace: r.namespace, id: r.digest };
  }

  remove(nodes: GcNode[]): void {
    for (const n of nodes) this.q.delete.run(n.namespace, n.id);
  }

  async afterCollect(removed: GcNode[]): Promise<void> {
    await this.store.sweepBlobs(removed.length > 0);
  }
}

/** The ingest node kind: unexpired ingests are roots; an ingest references its expected blob. */
export class IngestGcSource implements GcSource {
  readonly kind = 'ingest' as const;
  private readonly q;

  constructor(db: Database, private readonly store: SqliteContentStore) {
    this.q = {
      roots: db.prepare<[number], { namespace: string; ref: string }>('SELECT namespace, ref FROM ingests WHERE expires_at IS NOT NULL AND expires_at > ?'),
      get: db.prepare<[string, string], { expected: string }>('SELECT expected FROM ingests WHERE namespace = ? AND ref = ?'),
      all: db.prepare<[], { namespace: string; ref: string }>('SELECT namespace, ref FROM ingests'),
      delete: db.prepare('DELETE FROM ingests WHERE namespace = ? AND ref = ?'),
    };
  }

  *roots(now: Date): Iterable<GcNode> {
    for (const r of this.q.roots.all(now.getTime())) yield { kind: 'ingest', namespace: r.namespace, id: r.ref };
  }

  *references(node: GcNode): Iterable<GcNode> {
    const row = this.q.get.get(node.namespace, node.id);
    if (row?.expected) yield { kind: 'content', namespace: node.namespace, id: row.expected };
  }

  *all(): Iterable<GcNode> {
    for (const r of this.q.all.all()) yield { kind: 'ingest', namespace: r.namespace, id: r.ref };
  }

  remove(nodes: GcNode[]): void {
    for (const n of nodes) this.q.delete.run(n.namespace, n.id);
  }

  async afterCollect(removed: GcNode[]): Promise<void> {
    await this.store.sweepIngests(removed.length > 0);
  }
}

/** Builds the namespaced content store over `backend` and registers it with the metadata store. */
export function attachContent(md: Metadata, backend: ContentBackend, opts: { shared: boolean; log?: Logger }): SqliteContentStore {
  const store = new SqliteContentStore(md, backend, opts.shared, opts.log);
  md.addNamespaceResource(store.namespaceResource);
  md.addGcSource(new ContentGcSource(md.db, store));
  md.addGcSource(new IngestGcSource(md.db, store));
  // The local store's janitor asks before removing a stale ingest (other backends ignore it).
  backend.keepIngest = (ref, now) => store.keepBackendIngest(ref, now);
  return store;
}
