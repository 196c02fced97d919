/** The metadata plugin's instance: the database, namespaces, and the gc hooks domain stores use. */
import type { Database } from 'better-sqlite3';
import type { GcSource, GcStats, Metadata, NamespaceResource, NamespaceStore } from '../../../core/metadata/metadata.js';
import type { ContentStore } from '../../../core/content/content.js';
import type { Snapshotter } from '../../../core/snapshots/snapshotter.js';
import type { LeaseManager } from '../../../core/leases/leases.js';
import type { ImageStore } from '../../../core/images/images.js';
import type { ContainerStore } from '../../../core/containers/containers.js';
import { SqliteNamespaceStore } from './namespaces.js';
import { collect } from './gc.js';

export class SqliteMetadata implements Metadata {
  readonly namespaces: NamespaceStore;
  // Domain stores are attached by the plugin's init once their backends are known.
  content!: ContentStore;
  snapshotters = new Map<string, Snapshotter>();
  leases!: LeaseManager;
  images!: ImageStore;
  containers!: ContainerStore;
  private readonly resources: NamespaceResource[] = [];
  private readonly gcSources: GcSource[] = [];
  private readonly listeners: ((kind: 'deletion' | 'mutation') => void)[] = [];
  private collecting: Promise<GcStats> | undefined;

  constructor(readonly db: Database, readonly path: string) {
    this.namespaces = new SqliteNamespaceStore(db, () => this.resources);
  }

  transaction<T>(fn: () => T): T {
    return this.db.inTransaction ? fn() : this.db.transaction(fn).immediate();
  }

  addNamespaceResource(r: NamespaceResource): void {
    this.resources.push(r);
  }

  addGcSource(s: GcSource): void {
    this.gcSources.push(s);
  }

  /** One collection at a time; a caller arriving during one waits for it and then runs its own. */
  async collectGarbage(): Promise<GcStats> {
    while (this.collecting) await this.collecting.catch(() => undefined);
    this.collecting = collect(this.db, this.gcSources).then(({ removed, ms }) => ({ removed, ms }));
    try {
      return await this.collecting;
    } finally {
      this.collecting = undefined;
    }
  }

  markDeletion(): void {
    for (const l of this.listeners) l('deletion');
  }

  markMutation(): void {
    for (const l of this.listeners) l('mutation');
  }

  onChange(fn: (kind: 'deletion' | 'mutation') => void): void {
    this.listeners.push(fn);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
