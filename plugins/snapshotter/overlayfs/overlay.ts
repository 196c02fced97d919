/**
 * The overlayfs snapshotter. Each snapshot is `<root>/snapshots/<id>/` holding `fs` (the
 * layer's own files: an overlay upper dir while active) and, for active snapshots, `work`
 * (overlay's work dir). A snapshot without parents mounts its `fs` with a bind mount; with
 * parents it is an overlay whose lower dirs are the parents' `fs`, nearest first. Commit only
 * flips the record to committed: the upper dir becomes a lower dir of later snapshots as is.
 *
 * All bookkeeping is in the shared storage layer (core/snapshots/storage.ts). Creating a
 * snapshot is one synchronous transaction: the directories are made under a temporary name
 * and renamed to the new id inside the transaction, so a crash leaves either nothing or an
 * orphaned directory that cleanup removes.
 *
 * The directories of the next active snapshots are made ahead of time, beside the requests:
 * creating inodes is the slowest part of a Prepare here (on ext4 a new inode is searched for
 * past the ones freed in the last minutes, which a busy snapshotter always has; see
 * docs/PERFORMANCE.md), and a Prepare that finds one ready only renames it.
 */
import { chmodSync, lchownSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Logger } from '../../../core/log/logger.js';
import type { Labels } from '../../../core/metadata/metadata.js';
import type { Mount } from '../../../core/mount/types.js';
import type { RequestContext } from '../../../core/namespaces/namespaces.js';
import { Kind, SnapshotLabel, type Cleaner, type SnapshotInfo } from '../../../core/snapshots/snapshotter.js';
import { MetaStore, wrapError, type StoredSnapshot } from '../../../core/snapshots/storage.js';
import { removeDirectories } from '../common.js';
import { spreadNewSubdirectories } from '../../../core/sys/fsx.js';
import { StoredSnapshotter } from '../stored.js';

export interface OverlayOptions {
  /** Keep removed snapshots' directories until cleanup (containerd's default for the plugin). */
  asyncRemove?: boolean;
  /** Add `containerd.io/snapshot/overlay.upperdir` to Stat/Update/Walk results. */
  upperdirLabel?: boolean;
  /** Extra options for every overlay mount (not for the bind mounts). */
  mountOptions?: readonly string[];
  /** Add index=off (the kernel offers the index feature). */
  indexOff?: boolean;
  /** Add userxattr (overlay in a user namespace). */
  userxattr?: boolean;
  log?: Logger;
}

/**
 * The directories in a new snapshot's, with their modes: `fs`, and overlay's `work` for an
 * active one. Modes are set explicitly: the result must not depend on the daemon's umask.
 */
const layoutOf = (kind: Kind): readonly (readonly [string, number])[] =>
  kind === Kind.Active ? [['fs', 0o755], ['work', 0o711]] : [['fs', 0o755]];

/** How many active-snapshot directories are kept ready (see the header), and their names. */
const SPARE_DIRECTORIES = 2;
const SPARE_PREFIX = 'spare-';

export class OverlaySnapshotter extends StoredSnapshotter implements Cleaner {
  protected readonly ms: MetaStore;
  protected readonly mountsFailure = 'failed to get active mount';
  private readonly snapshotsDir: string;
  private readonly overlayOptions: string[];
  /** Names (under snapshots/) of the directories made ahead of time; cleanup leaves them. */
  private readonly spares = new Set<string>();
  /** The spare being made, if any (its name is not in `spares` yet). */
  private refilling: Promise<void> | undefined;
  private closing = false;

  constructor(readonly root: string, private readonly opts: OverlayOptions = {}) {
    super();
    mkdirSync(root, { recursive: true, mode: 0o700 });
    this.snapshotsDir = join(root, 'snapshots');
    mkdirSync(this.snapshotsDir, { recursive: true, mode: 0o700 });
    // Each snapshot's tree away from the ones just removed (see spreadNewSubdirectories).
    spreadNewSubdirectories(this.snapshotsDir);
    this.ms = new MetaStore(join(root, 'metadata.db'));
    this.overlayOptions = [
      ...(opts.indexOff ? ['index=off'] : []),
      ...(opts.userxattr ? ['userxattr'] : []),
      ...(opts.mountOptions ?? []),
    ];
  }

  upperPath(id: string): string {
    return join(this.snapshotsDir, id, 'fs');
  }

  workPath(id: string): string {
    return join(this.snapshotsDir, id, 'work');
  }

  private withUpperdir(info: SnapshotInfo, id: string): SnapshotInfo {
    if (!this.opts.upperdirLabel) return info;
    return { ...info, labels: { ...info.labels, [SnapshotLabel.overlayUpperdir]: this.upperPath(id) } };
  }

  override async stat(_ctx: RequestContext, key: string): Promise<SnapshotInfo> {
    const { id, info } = this.ms.getInfo(key);
    return this.withUpperdir(info, id);
  }

  override async update(_ctx: RequestContext, info: Pick<SnapshotInfo, 'name' | 'labels'>, fieldpaths?: readonly string[]): Promise<SnapshotInfo> {
    return this.lock.run(() => {
      const updated = this.ms.updateInfo(info, fieldpaths);
      return this.opts.upperdirLabel ? this.withUpperdir(updated, this.ms.getInfo(updated.name).id) : updated;
    });
  }

  protected activeDir(id: string): string {
    return this.upperPath(id);
  }

  protected createSnapshot(kind: Kind, key: string, parent: string, labels: Labels | undefined): Promise<Mount[]> {
    return this.lock.run(() => {
      let td: string;
      try {
        td = this.takeDirectory(kind);
      } catch (err) {
        throw wrapError('failed to create prepare snapshot dir', err);
      }
      try {
        const s = this.ms.transaction(() => {
          let created: StoredSnapshot;
          try {
            created = this.ms.createSnapshot(kind, key, parent, labels);
          } catch (err) {
            throw wrapError('failed to create snapshot', err);
          }
          if (created.parentIds.length > 0) {
            // The new layer's root takes the owner of the layer below, so an image whose root
            // directory belongs to another user keeps it when mounted.
            const st = statSync(this.upperPath(created.parentIds[0]!));
            lchownSync(join(td, 'fs'), st.uid, st.gid);
          }
          try {
            renameSync(td, join(this.snapshotsDir, created.id));
          } catch (err) {
            throw wrapError('failed to rename', err);
          }
          return created;
        });
        return this.mountsOf(s);
      } catch (err) {
        rmSync(td, { recursive: true, force: true });
        throw err;
      } finally {
        // Only now: a spare's mkdir holds the snapshots directory's lock for as long as the
        // kernel looks for a free inode, which the rename above would have waited for.
        if (kind === Kind.Active) this.refillSoon();
      }
    });
  }

  /** A directory for a new snapshot: a spare one for an active snapshot, if one is ready. */
  private takeDirectory(kind: Kind): string {
    if (kind !== Kind.Active) return this.prepareDirectory(kind);
    const [spare] = this.spares;
    if (spare === undefined) return this.prepareDirectory(kind);
    this.spares.delete(spare);
    return join(this.snapshotsDir, spare);
  }

  /**
   * Makes spare directories one at a time, with the thread pool's file calls: their cost is in
   * the kernel, and there it runs beside the requests this thread goes on serving (a `ctr
   * run` sends its next ones right after the Prepare). Called once a Prepare is done.
   */
  private refillSoon(): void {
    if (this.refilling || this.closing || this.spares.size >= SPARE_DIRECTORIES) return;
    this.refilling = this.makeSpare().then(
      (name) => {
        this.refilling = undefined;
        this.spares.add(name);
        this.refillSoon();
      },
      (err: unknown) => {
        // The next Prepare makes its directory itself, and reports what fails.
        this.refilling = undefined;
        this.opts.log?.warn('cannot make a spare snapshot directory', { error: String(err) });
      },
    );
  }

  /** An active snapshot's directories under a spare-* name, as prepareDirectory makes them. */
  private async makeSpare(): Promise<string> {
    const td = await mkdtemp(join(this.snapshotsDir, SPARE_PREFIX));
    try {
      for (const [sub, mode] of layoutOf(Kind.Active)) {
        await mkdir(join(td, sub));
        await chmod(join(td, sub), mode);
      }
    } catch (err) {
      await rm(td, { recursive: true, force: true }).catch(() => undefined);
      throw err;
    }
    return basename(td);
  }

  override async close(): Promise<void> {
    this.closing = true;
    await this.refilling;
    for (const name of this.spares) rmSync(join(this.snapshotsDir, name), { recursive: true, force: true });
    this.spares.clear();
    await super.close();
  }

  private prepareDirectory(kind: Kind): string {
    const td = mkdtempSync(join(this.snapshotsDir, 'new-'));
    try {
      for (const [sub, mode] of layoutOf(kind)) {
        mkdirSync(join(td, sub));
        chmodSync(join(td, sub), mode);
      }
      return td;
    } catch (err) {
      rmSync(td, { recursive: true, force: true });
      throw err;
    }
  }

  protected mountsOf(s: StoredSnapshot): Mount[] {
    if (s.parentIds.length === 0) {
      // A lone layer: overlay needs at least one lower dir, so bind the directory itself.
      return [{ type: 'bind', source: this.upperPath(s.id), options: [s.kind === Kind.View ? 'ro' : 'rw', 'rbind'] }];
    }
    if (s.kind !== Kind.Active && s.parentIds.length === 1) {
      // A view of a single layer is that layer, read-only.
      return [{ type: 'bind', source: this.upperPath(s.parentIds[0]!), options: ['ro', 'rbind'] }];
    }
    const options = [...this.overlayOptions];
    if (s.kind === Kind.Active) options.push(`workdir=${this.workPath(s.id)}`, `upperdir=${this.upperPath(s.id)}`);
    options.push(`lowerdir=${s.parentIds.map((id) => this.upperPath(id)).join(':')}`);
    return [{ type: 'overlay', source: 'overlay', options }];
  }

  /**
   * Forgets the snapshot at once (its key can be reused immediately). Its directory goes now
   * with sync removal, or at the next cleanup with async removal.
   */
  async remove(_ctx: RequestContext, key: string): Promise<void> {
    const removals = await this.lock.run(() => {
      try {
        this.ms.remove(key);
      } catch (err) {
        throw wrapError('failed to remove', err);
      }
      return this.opts.asyncRemove ? [] : this.cleanupDirectories();
    });
    if (removals.length) await removeDirectories(removals, this.opts.log);
  }

  override async walk(_ctx: RequestContext, fn: (info: SnapshotInfo) => void | Promise<void>, filters?: readonly string[]): Promise<void> {
    const infos = this.ms.walkInfo(filters);
    const idByKey = this.opts.upperdirLabel ? new Map([...this.ms.idMap()].map(([id, v]) => [v.key, id])) : undefined;
    for (const info of infos) {
      const id = idByKey?.get(info.name);
      await fn(id ? this.withUpperdir(info, id) : info);
    }
  }

  /** Removes every directory under snapshots/ that no record owns (removed snapshots, crash leftovers). */
  async cleanup(_ctx?: RequestContext): Promise<void> {
    const dirs = await this.lock.run(() => this.cleanupDirectories());
    await removeDirectories(dirs, this.opts.log);
  }

  private cleanupDirectories(): string[] {
    const ids = this.ms.idMap();
    // Spares are no snapshot's; one still being made is not in `spares` yet.
    const spare = (d: string) => this.spares.has(d) || (this.refilling !== undefined && d.startsWith(SPARE_PREFIX));
    return readdirSync(this.snapshotsDir).filter((d) => !ids.has(d) && !spare(d)).map((d) => join(this.snapshotsDir, d));
  }
}
