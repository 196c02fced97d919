/**
 * The storage layer every built-in snapshotter keeps its bookkeeping in (containerd's
 * snapshots/storage, which uses a bolt file): snapshot ids, keys, kinds, parent chains,
 * labels, timestamps and the usage recorded at commit, in an embedded SQLite database at
 * `<snapshotter root>/metadata.db`.
 *
 * Ids are the on-disk names of snapshot directories or subvolumes. They come from an
 * AUTOINCREMENT column, so an id is never handed out twice, even after the row is deleted:
 * a directory left behind by a crash can never be mistaken for a newer snapshot.
 *
 * Every method is synchronous and works on committed state; `transaction(fn)` groups calls
 * (plus any quick synchronous filesystem step such as a rename) into one atomic write. A
 * snapshotter that needs asynchronous work in the middle of a mutation holds its Mutex
 * across the whole sequence instead (see mutex.ts).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  AlreadyExistsError, BerthError, FailedPreconditionError, InvalidArgumentError, NotFoundError, RemoteError,
} from '../errdefs/errdefs.js';
import { parseFilters } from '../filters/filters.js';
import { openSqlite, type SqliteDatabase } from '../sys/sqlite.js';
import type { Labels } from '../metadata/metadata.js';
import { Kind, snapshotFilterAdaptor, type SnapshotInfo, type Usage } from './snapshotter.js';


/**
 * An active or view snapshot as a driver needs it to build mounts: its id and the ids of
 * its committed ancestors, nearest parent first (the order overlay's lowerdir wants).
 */
export interface StoredSnapshot {
  id: string;
  kind: Kind;
  parentIds: string[];
}

/** Kind, id and the stored usage of one snapshot, as GetInfo returns them. */
export interface StoredInfo {
  id: string;
  info: SnapshotInfo;
  usage: Usage;
}

interface Row {
  id: number;
  key: string;
  kind: number;
  labels: string;
  created_at: number;
  updated_at: number;
  size: number;
  inodes: number;
  parent: string | null;
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    parent_id INTEGER,
    kind INTEGER NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    inodes INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX IF NOT EXISTS snapshots_by_parent ON snapshots(parent_id);
`;

const SELECT_INFO = `
  SELECT s.id, s.key, s.kind, s.labels, s.created_at, s.updated_at, s.size, s.inodes, p.key AS parent
  FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id`;

/** Labels as canonical JSON (sorted keys), dropping empty values as containerd does on write. */
export function encodeLabels(labels: Labels | undefined): string {
  const entries = Object.entries(labels ?? {}).filter(([, v]) => v !== undefined && v !== '');
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify(Object.fromEntries(entries));
}

export const decodeLabels = (text: string | null | undefined): Labels => (text ? (JSON.parse(text) as Labels) : {});

/**
 * Applies containerd's update field paths to labels: none replaces every label, `labels`
 * replaces them all, `labels.<k>` sets or (with an empty or missing value) removes one key.
 * Any other path is INVALID_ARGUMENT naming the snapshot.
 */
export function applyLabelPaths(current: Labels, next: Labels | undefined, paths: readonly string[] | undefined, name: string): Labels {
  const incoming = next ?? {};
  if (!paths || paths.length === 0) return { ...incoming };
  let out: Labels = { ...current };
  for (const path of paths) {
    if (path.startsWith('labels.')) {
      const key = path.slice('labels.'.length);
      const value = incoming[key];
      if (value === undefined || value === '') delete out[key];
      else out[key] = value;
    } else if (path === 'labels') {
      out = { ...incoming };
    } else {
      throw new InvalidArgumentError(`cannot update ${JSON.stringify(path)} field on snapshot ${JSON.stringify(name)}`);
    }
  }
  return out;
}

/**
 * Prefixes an error's message while keeping its class (and so its gRPC code), the way Go's
 * `fmt.Errorf("context: %w", err)` keeps errdefs classification.
 */
export function wrapError(prefix: string, err: unknown): Error {
  if (err instanceof RemoteError) return new RemoteError(err.code, `${prefix}: ${err.message}`);
  if (err instanceof BerthError) {
    const Cls = err.constructor as new (message: string, options?: { cause?: unknown }) => Error;
    return new Cls(`${prefix}: ${err.message}`, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new Error(`${prefix}: ${message}`, { cause: err });
}

/** The prepared statements of a snapshot database. */
function statements(db: SqliteDatabase) {
  return {
    byKey: db.prepare<[string], Row>(`${SELECT_INFO} WHERE s.key = ?`),
    all: db.prepare<[], Row>(`${SELECT_INFO} ORDER BY s.key`),
    idOnly: db.prepare<[string], { id: number; kind: number; parent_id: number | null }>('SELECT id, kind, parent_id FROM snapshots WHERE key = ?'),
    exists: db.prepare<[string], { one: number }>('SELECT 1 AS one FROM snapshots WHERE key = ?'),
    chain: db.prepare<[number], { id: number }>(`
      WITH RECURSIVE chain(id, parent_id, depth) AS (
        SELECT id, parent_id, 0 FROM snapshots WHERE id = ?
        UNION ALL
        SELECT s.id, s.parent_id, c.depth + 1 FROM snapshots s JOIN chain c ON s.id = c.parent_id
      )
      SELECT id FROM chain ORDER BY depth`),
    insert: db.prepare<[string, number | null, number, string, number, number]>(
      'INSERT INTO snapshots (key, parent_id, kind, labels, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)'),
    hasChild: db.prepare<[number], { one: number }>('SELECT 1 AS one FROM snapshots WHERE parent_id = ? LIMIT 1'),
    delete: db.prepare<[number]>('DELETE FROM snapshots WHERE id = ?'),
    commit: db.prepare<[string, number, string, number, number, number, number, number]>(
      'UPDATE snapshots SET key = ?, kind = ?, labels = ?, created_at = ?, updated_at = ?, size = ?, inodes = ? WHERE id = ?'),
    setLabels: db.prepare<[string, number, number]>('UPDATE snapshots SET labels = ?, updated_at = ? WHERE id = ?'),
    ids: db.prepare<[], { id: number; key: string; kind: number }>('SELECT id, key, kind FROM snapshots'),
  };
}

export class MetaStore {
  private opened: { db: SqliteDatabase; q: ReturnType<typeof statements> } | undefined;
  private closed = false;

  /**
   * Opens the database file at `path`, or, when there is none yet (a fresh root), creates it
   * on first use: a snapshotter nobody uses costs the daemon's start-up nothing, while an
   * existing database is still opened, and so checked, at boot.
   */
  constructor(readonly path: string) {
    if (existsSync(path)) this.open();
  }

  private open() {
    if (this.closed) throw new Error(`snapshot database ${this.path} is closed`);
    if (this.opened) return this.opened;
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    // An OS crash can only lose the newest commits (see openSqlite), which leaves at worst
    // an orphaned directory that cleanup removes.
    const db = openSqlite(this.path);
    db.exec(SCHEMA);
    this.opened = { db, q: statements(db) };
    return this.opened;
  }

  private get db(): SqliteDatabase {
    return this.open().db;
  }

  private get q(): ReturnType<typeof statements> {
    return this.open().q;
  }

  /** Runs `fn` in one immediate write transaction; nested calls join the outer one. */
  transaction<T>(fn: () => T): T {
    return this.db.inTransaction ? fn() : this.db.transaction(fn).immediate();
  }

  private toInfo(r: Row): SnapshotInfo {
    return {
      kind: r.kind as Kind,
      name: r.key,
      parent: r.parent ?? '',
      labels: decodeLabels(r.labels),
      createdAt: new Date(r.created_at),
      updatedAt: new Date(r.updated_at),
    };
  }

  /** Id, info and stored usage of `key`; NOT_FOUND "snapshot does not exist". */
  getInfo(key: string): StoredInfo {
    const r = this.q.byKey.get(key);
    if (!r) throw new NotFoundError('snapshot does not exist');
    return { id: String(r.id), info: this.toInfo(r), usage: { size: r.size, inodes: r.inodes } };
  }

  /** Whether a snapshot (of any kind) is stored under `key`. */
  has(key: string): boolean {
    return this.q.exists.get(key) !== undefined;
  }

  /**
   * Updates labels under containerd's field paths and returns the new info. NOT_FOUND when
   * missing; INVALID_ARGUMENT for a path other than `labels`/`labels.<k>`.
   */
  updateInfo(info: Pick<SnapshotInfo, 'name' | 'labels'>, fieldpaths?: readonly string[]): SnapshotInfo {
    return this.transaction(() => {
      const r = this.q.byKey.get(info.name);
      if (!r) throw new NotFoundError('snapshot does not exist');
      const current = this.toInfo(r);
      const labels = applyLabelPaths(current.labels, info.labels, fieldpaths, info.name);
      const encoded = encodeLabels(labels);
      const now = Date.now();
      this.q.setLabels.run(encoded, now, r.id);
      return { ...current, labels: decodeLabels(encoded), updatedAt: new Date(now) };
    });
  }

  /** Every stored snapshot matching `filters` (containerd filter syntax), ordered by key. */
  walkInfo(filters?: readonly string[]): SnapshotInfo[] {
    const filter = parseFilters(filters);
    const out: SnapshotInfo[] = [];
    for (const r of this.q.all.iterate()) {
      const info = this.toInfo(r);
      if (filter.match(snapshotFilterAdaptor(info))) out.push(info);
    }
    return out;
  }

  /** Ids of the committed chain starting at `parentId`, nearest first. */
  private parentIds(parentId: number | null): string[] {
    if (parentId === null) return [];
    return this.q.chain.all(parentId).map((r) => String(r.id));
  }

  /**
   * The active or view snapshot `key` with its parent chain. NOT_FOUND when missing;
   * FAILED_PRECONDITION for a committed snapshot (it has no mounts).
   */
  getSnapshot(key: string): StoredSnapshot {
    const r = this.q.idOnly.get(key);
    if (!r) throw new NotFoundError('snapshot does not exist');
    if (r.kind !== Kind.Active && r.kind !== Kind.View) {
      throw new FailedPreconditionError(`requested snapshot ${key} not active or view`);
    }
    return { id: String(r.id), kind: r.kind as Kind, parentIds: this.parentIds(r.parent_id) };
  }

  /**
   * Records a new active or view snapshot. The parent, when given, must exist (NOT_FOUND)
   * and be committed (INVALID_ARGUMENT); the key must be new (ALREADY_EXISTS).
   */
  createSnapshot(kind: Kind, key: string, parent: string, labels?: Labels): StoredSnapshot {
    if (kind !== Kind.Active && kind !== Kind.View) {
      throw new InvalidArgumentError(`snapshot type ${kind} invalid; only snapshots of type Active or View can be created`);
    }
    return this.transaction(() => {
      let parentId: number | null = null;
      if (parent !== '') {
        const p = this.q.idOnly.get(parent);
        if (!p) throw new NotFoundError(`missing parent ${JSON.stringify(parent)} bucket`);
        if (p.kind !== Kind.Committed) throw new InvalidArgumentError(`parent ${JSON.stringify(parent)} is not committed snapshot`);
        parentId = p.id;
      }
      if (this.q.exists.get(key)) throw new AlreadyExistsError(`snapshot ${key}`);
      const now = Date.now();
      const id = Number(this.q.insert.run(key, parentId, kind, encodeLabels(labels), now, now).lastInsertRowid);
      return { id: String(id), kind, parentIds: this.parentIds(parentId) };
    });
  }

  /**
   * Deletes the record of `key` and returns its id and kind. NOT_FOUND when missing;
   * FAILED_PRECONDITION while another snapshot names it as parent.
   */
  remove(key: string): { id: string; kind: Kind } {
    return this.transaction(() => {
      const r = this.q.idOnly.get(key);
      if (!r) throw new NotFoundError(`snapshot ${key}`);
      if (this.q.hasChild.get(r.id)) throw new FailedPreconditionError('cannot remove snapshot with child');
      this.q.delete.run(r.id);
      return { id: String(r.id), kind: r.kind as Kind };
    });
  }

  /**
   * Turns the active snapshot `key` into the committed snapshot `name`, keeping its id.
   * Labels are replaced (not inherited), the timestamps restart and `usage` is recorded.
   * ALREADY_EXISTS if `name` is taken, NOT_FOUND if `key` is missing, FAILED_PRECONDITION if
   * `key` is not active.
   */
  commitActive(key: string, name: string, usage: Usage, labels?: Labels): string {
    return this.transaction(() => {
      if (this.q.exists.get(name)) throw new AlreadyExistsError(`committed snapshot ${name}`);
      const r = this.q.idOnly.get(key);
      if (!r) throw new NotFoundError(`failed to get active snapshot ${JSON.stringify(key)}`);
      if (r.kind !== Kind.Active) throw new FailedPreconditionError(`snapshot ${JSON.stringify(key)} is not active`);
      const now = Date.now();
      this.q.commit.run(name, Kind.Committed, encodeLabels(labels), now, now, Math.trunc(usage.size), Math.trunc(usage.inodes), r.id);
      return String(r.id);
    });
  }

  /** Every stored id with its key and kind (orphan detection). */
  idMap(): Map<string, { key: string; kind: Kind }> {
    const out = new Map<string, { key: string; kind: Kind }>();
    // Asked at boot (orphan cleanup): a database not created yet holds no snapshot.
    if (!this.opened && !existsSync(this.path)) return out;
    for (const r of this.q.ids.iterate()) out.set(String(r.id), { key: r.key, kind: r.kind as Kind });
    return out;
  }

  /** Closes the database; later calls are no-ops. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.opened?.db.open) this.opened.db.close();
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
