/** Namespaces in the metadata database. */
import type { Database } from 'better-sqlite3';
import { AlreadyExistsError, FailedPreconditionError, NotFoundError } from '../../../core/errdefs/errdefs.js';
import type { Labels, Namespace, NamespaceResource, NamespaceStore } from '../../../core/metadata/metadata.js';
import { validateLabels } from '../../../core/metadata/labels.js';
import { validateIdentifier } from '../../../core/identifiers/identifiers.js';
import { validateNamespace } from '../../../core/namespaces/namespaces.js';
import { parseLabels, stringifyLabels } from './database.js';

interface Row { name: string; labels: string }

export class SqliteNamespaceStore implements NamespaceStore {
  private readonly q;
  constructor(private readonly db: Database, private readonly resources: () => readonly NamespaceResource[]) {
    this.q = {
      get: db.prepare<[string], Row>('SELECT name, labels FROM namespaces WHERE name = ?'),
      list: db.prepare<[], Row>('SELECT name, labels FROM namespaces ORDER BY name'),
      insert: db.prepare('INSERT INTO namespaces (name, labels, created_at, updated_at) VALUES (?, ?, ?, ?)'),
      insertIgnore: db.prepare('INSERT OR IGNORE INTO namespaces (name, labels, created_at, updated_at) VALUES (?, \'{}\', ?, ?)'),
      setLabels: db.prepare('UPDATE namespaces SET labels = ?, updated_at = ? WHERE name = ?'),
      delete: db.prepare('DELETE FROM namespaces WHERE name = ?'),
    };
  }

  create(name: string, labels: Labels): Namespace {
    // Create reports the identifier's own message, as containerd does (the "namespace
    // validation" prefix is for a request's namespace).
    validateIdentifier(name);
    validateLabels(labels);
    const now = Date.now();
    try {
      this.q.insert.run(name, stringifyLabels(labels), now, now);
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new AlreadyExistsError(`namespace ${JSON.stringify(name)}`);
      throw err;
    }
    return { name, labels: { ...labels } };
  }

  get(name: string): Namespace | undefined {
    const row = this.q.get.get(name);
    return row && { name: row.name, labels: parseLabels(row.labels) };
  }

  list(): Namespace[] {
    return this.q.list.all().map((r) => ({ name: r.name, labels: parseLabels(r.labels) }));
  }

  ensure(name: string): void {
    validateNamespace(name);
    const now = Date.now();
    this.q.insertIgnore.run(name, now, now);
  }

  setLabel(name: string, key: string, value: string): void {
    this.db.transaction(() => {
      this.ensure(name);
      const labels = this.get(name)!.labels;
      if (value) labels[key] = value;
      else delete labels[key];
      validateLabels(labels);
      this.q.setLabels.run(stringifyLabels(labels), Date.now(), name);
    })();
  }

  setLabels(name: string, labels: Labels): void {
    validateLabels(labels);
    this.db.transaction(() => {
      this.ensure(name);
      this.q.setLabels.run(stringifyLabels(labels), Date.now(), name);
    })();
  }

  delete(name: string): void {
    this.db.transaction(() => {
      if (!this.q.get.get(name)) throw new NotFoundError(`namespace ${name}`);
      const held = this.resources().flatMap((r) => r.holdings(name)).sort((a, b) => holdingRank(a) - holdingRank(b));
      if (held.length) {
        throw new FailedPreconditionError(`namespace ${JSON.stringify(name)} must be empty, but it still has ${held.join(', ')}`);
      }
      this.q.delete.run(name);
      // What containerd keeps in the namespace bucket without blocking its removal goes with it.
      for (const table of ['leases', 'lease_resources', 'ingests', 'sequences']) {
        this.db.prepare(`DELETE FROM ${table} WHERE namespace = ?`).run(name);
      }
    })();
  }
}

/** containerd names what a namespace still holds in this order (snapshots last, per snapshotter). */
const HOLDING_ORDER = ['images', 'blobs', 'containers'];
function holdingRank(holding: string): number {
  const i = HOLDING_ORDER.indexOf(holding);
  return i < 0 ? HOLDING_ORDER.length : i;
}
