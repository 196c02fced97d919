/**
 * The native snapshotter: every snapshot is a plain directory `<root>/snapshots/<id>`, and
 * preparing on top of a parent makes a full copy of the parent's tree. It works on any
 * filesystem and needs no kernel features beyond bind mounts. A view of a parent is the
 * parent's own directory mounted read-only (nothing is copied).
 */
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, renameSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../../core/log/logger.js';
import type { Labels } from '../../../core/metadata/metadata.js';
import type { Mount } from '../../../core/mount/types.js';
import type { RequestContext } from '../../../core/namespaces/namespaces.js';
import { Kind } from '../../../core/snapshots/snapshotter.js';
import { MetaStore, wrapError, type StoredSnapshot } from '../../../core/snapshots/storage.js';
import { removeDirectories } from '../common.js';
import { spreadNewSubdirectories } from '../../../core/sys/fsx.js';
import { copyTree } from './copy.js';
import { StoredSnapshotter } from '../stored.js';

/** Sentinel thrown to roll back a validation-only transaction. */
const ROLLBACK = Symbol('rollback');

export interface NativeOptions {
  log?: Logger;
  /** File copies in flight during a Prepare (default 32). */
  copyConcurrency?: number;
}

export class NativeSnapshotter extends StoredSnapshotter {
  protected readonly ms: MetaStore;
  protected readonly mountsFailure = 'failed to get snapshot mount';
  private readonly snapshotsDir: string;

  constructor(readonly root: string, private readonly opts: NativeOptions = {}) {
    super();
    mkdirSync(root, { recursive: true, mode: 0o700 });
    this.snapshotsDir = join(root, 'snapshots');
    mkdirSync(this.snapshotsDir, { recursive: true, mode: 0o700 });
    // Each snapshot's tree away from the ones just removed (see spreadNewSubdirectories).
    spreadNewSubdirectories(this.snapshotsDir);
    this.ms = new MetaStore(join(root, 'metadata.db'));
  }

  snapshotDir(id: string): string {
    return join(this.snapshotsDir, id);
  }

  protected activeDir(id: string): string {
    return this.snapshotDir(id);
  }

  /**
   * Under the lock: validate against the records, copy the parent into a temporary
   * directory (the slow part, asynchronous), then record the snapshot and rename the
   * directory to its id in one transaction. Any failure removes the temporary directory.
   */
  protected createSnapshot(kind: Kind, key: string, parent: string, labels: Labels | undefined): Promise<Mount[]> {
    return this.lock.run(async () => {
      // A view of a parent uses the parent's directory; everything else gets its own.
      const ownDir = kind === Kind.Active || parent === '';
      let parentDir: string | undefined;
      if (ownDir && parent !== '') {
        // Checked up front so that a bad parent fails before the copy, with the storage
        // layer's own error; the lock keeps the answer valid until the record is written.
        try {
          this.ms.transaction(() => {
            const probe = this.ms.createSnapshot(kind, key, parent, labels);
            parentDir = this.snapshotDir(probe.parentIds[0]!);
            throw ROLLBACK;
          });
        } catch (err) {
          if (err !== ROLLBACK) throw wrapError('failed to create snapshot', err);
        }
      }
      let td: string | undefined;
      if (ownDir) {
        try {
          td = mkdtempSync(join(this.snapshotsDir, 'new-'));
          chmodSync(td, 0o755);
        } catch (err) {
          throw wrapError('failed to create temp dir', err);
        }
      }
      try {
        if (td && parentDir) {
          try {
            await copyTree(parentDir, td, {
              concurrency: this.opts.copyConcurrency,
              onXattrError: (path, name, err) => this.opts.log?.debug('failed to copy xattr', { path, xattr: name, error: (err as Error).message }),
            });
          } catch (err) {
            throw wrapError('copying of parent failed', err);
          }
        }
        const s = this.ms.transaction(() => {
          let created: StoredSnapshot;
          try {
            created = this.ms.createSnapshot(kind, key, parent, labels);
          } catch (err) {
            throw wrapError('failed to create snapshot', err);
          }
          if (td) {
            try {
              renameSync(td, this.snapshotDir(created.id));
            } catch (err) {
              throw wrapError('failed to rename', err);
            }
          }
          return created;
        });
        td = undefined;
        return this.mountsOf(s);
      } finally {
        if (td) await rm(td, { recursive: true, force: true });
      }
    });
  }

  protected mountsOf(s: StoredSnapshot): Mount[] {
    const source = s.parentIds.length === 0 || s.kind === Kind.Active ? this.snapshotDir(s.id) : this.snapshotDir(s.parentIds[0]!);
    return [{ type: 'bind', source, options: ['rbind', s.kind === Kind.View ? 'ro' : 'rw'] }];
  }

  /**
   * The record goes and the directory is renamed to `rm-<id>` in one transaction; the
   * renamed tree is deleted afterwards (cleanup retries it if that is interrupted).
   */
  async remove(_ctx: RequestContext, key: string): Promise<void> {
    const renamed = await this.lock.run(() => this.ms.transaction(() => {
      let id: string;
      try {
        ({ id } = this.ms.remove(key));
      } catch (err) {
        throw wrapError('failed to remove', err);
      }
      const path = this.snapshotDir(id);
      const target = join(this.snapshotsDir, `rm-${id}`);
      try {
        renameSync(path, target);
        return target;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw wrapError('failed to rename', err);
      }
    }));
    if (renamed) await removeDirectories([renamed], this.opts.log);
  }

  /** Removes directories without a record: crash leftovers and interrupted removals. */
  async cleanupOrphans(): Promise<void> {
    const dirs = await this.lock.run(() => {
      const ids = this.ms.idMap();
      return readdirSync(this.snapshotsDir).filter((d) => !ids.has(d)).map((d) => join(this.snapshotsDir, d));
    });
    await removeDirectories(dirs, this.opts.log);
  }
}
