/**
 * The btrfs snapshotter: every snapshot is a btrfs subvolume — `active/<id>` (writable),
 * `view/<id>` (read-only) or `snapshots/<id>` (committed, read-only). A child is a
 * copy-on-write snapshot of its parent's subvolume, so preparing is O(1) whatever the layer
 * size. Snapshots are mounted by subvolume id from the filesystem's block device.
 *
 * Subvolumes are made and deleted with btrfs-progs. A new subvolume is created under a
 * temporary name and renamed to its id inside the storage transaction that records it,
 * so a crash leaves at most an unrecorded subvolume, which the boot-time cleanup deletes.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, renameSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import type { Logger } from '../../../core/log/logger.js';
import type { Labels } from '../../../core/metadata/metadata.js';
import type { Mount } from '../../../core/mount/types.js';
import type { RequestContext } from '../../../core/namespaces/namespaces.js';
import { Kind, type SnapshotOptions } from '../../../core/snapshots/snapshotter.js';
import { MetaStore, wrapError, type StoredSnapshot } from '../../../core/snapshots/storage.js';
import { diskUsageSync } from '../../../core/snapshots/usage.js';
import { StoredSnapshotter } from '../stored.js';

/** Inode number of every subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID). */
const SUBVOLUME_ROOT_INO = 256;

const ROLLBACK = Symbol('rollback');

/** Runs one btrfs-progs command; failures carry its stderr. */
export async function btrfs(args: string[]): Promise<string> {
  const res = await execa('btrfs', args, { stdin: 'ignore', reject: false });
  if (res.exitCode !== 0 || res.failed) {
    const detail = (res.stderr || res.stdout || (res as { shortMessage?: string }).shortMessage || '').toString().trim();
    throw new Error(`btrfs ${args.join(' ')}: ${detail || `exit code ${res.exitCode}`}`);
  }
  return res.stdout.toString();
}

const dirOfKind = (kind: Kind) => (kind === Kind.Active ? 'active' : kind === Kind.View ? 'view' : 'snapshots');

export interface BtrfsOptions {
  log?: Logger;
}

export class BtrfsSnapshotter extends StoredSnapshotter {
  protected readonly ms: MetaStore;
  protected readonly mountsFailure = 'failed to get active snapshot';
  /** Subvolume ids by path: they never change while the subvolume exists. */
  private readonly subvolIds = new Map<string, number>();

  /**
   * `root` must be on a btrfs filesystem whose block device is `device` (the plugin checks
   * both before constructing this).
   */
  constructor(readonly root: string, readonly device: string, private readonly opts: BtrfsOptions = {}) {
    super();
    for (const d of ['active', 'view', 'snapshots']) mkdirSync(join(root, d), { recursive: true, mode: 0o755 });
    this.ms = new MetaStore(join(root, 'metadata.db'));
  }

  private pathOf(kind: Kind, id: string): string {
    return join(this.root, dirOfKind(kind), id);
  }

  private async subvolumeId(path: string): Promise<number> {
    const cached = this.subvolIds.get(path);
    if (cached !== undefined) return cached;
    const out = (await btrfs(['inspect-internal', 'rootid', path])).trim();
    const id = Number.parseInt(out, 10);
    if (!Number.isInteger(id)) throw new Error(`btrfs inspect-internal rootid ${path}: unexpected output ${JSON.stringify(out)}`);
    this.subvolIds.set(path, id);
    return id;
  }

  private async deleteSubvolumes(paths: readonly string[]): Promise<void> {
    if (!paths.length) return;
    for (const p of paths) this.subvolIds.delete(p);
    await btrfs(['subvolume', 'delete', ...paths]);
  }

  protected async mountsOf(s: StoredSnapshot): Promise<Mount[]> {
    const options = [`subvolid=${await this.subvolumeId(this.pathOf(s.kind, s.id))}`];
    if (s.kind !== Kind.Active) options.push('ro');
    return [{ type: 'btrfs', source: this.device, options }];
  }

  protected activeDir(id: string): string {
    return this.pathOf(Kind.Active, id);
  }

  protected createSnapshot(kind: Kind, key: string, parent: string, labels: Labels | undefined): Promise<Mount[]> {
    return this.lock.run(async () => {
      // Validate first (the lock keeps the answer true): errors come from the storage layer
      // before any subvolume is made.
      let parentIds: string[] = [];
      try {
        this.ms.transaction(() => {
          parentIds = this.ms.createSnapshot(kind, key, parent, labels).parentIds;
          throw ROLLBACK;
        });
      } catch (err) {
        if (err !== ROLLBACK) throw err;
      }
      const temp = join(this.root, dirOfKind(kind), `new-${randomBytes(8).toString('hex')}`);
      if (parentIds.length === 0) await btrfs(['subvolume', 'create', temp]);
      else await btrfs(['subvolume', 'snapshot', ...(kind === Kind.View ? ['-r'] : []), this.pathOf(Kind.Committed, parentIds[0]!), temp]);
      let s: StoredSnapshot;
      try {
        s = this.ms.transaction(() => {
          const created = this.ms.createSnapshot(kind, key, parent, labels);
          renameSync(temp, this.pathOf(kind, created.id));
          return created;
        });
      } catch (err) {
        await this.deleteSubvolumes([temp]).catch((e) => this.opts.log?.error('failed to delete subvolume', { subvolume: temp, error: (e as Error).message }));
        throw err;
      }
      return this.mountsOf(s);
    });
  }

  override async commit(ctx: RequestContext, name: string, key: string, opts?: SnapshotOptions): Promise<void> {
    await this.lock.run(async () => {
      let id = '';
      try {
        // Same checks and errors as the real commit below, without writing anything yet.
        this.ms.transaction(() => {
          id = this.ms.commitActive(key, name, { size: 0, inodes: 0 }, opts?.labels);
          throw ROLLBACK;
        });
      } catch (err) {
        if (err !== ROLLBACK) throw wrapError('failed to commit', err);
      }
      const source = this.pathOf(Kind.Active, id);
      const target = this.pathOf(Kind.Committed, id);
      const usage = diskUsageSync(source, ctx.signal);
      // A leftover from an interrupted commit would make the snapshot command fail.
      if (existsSync(target)) await this.deleteSubvolumes([target]);
      await btrfs(['subvolume', 'snapshot', '-r', source, target]);
      try {
        this.ms.commitActive(key, name, usage, opts?.labels);
      } catch (err) {
        await this.deleteSubvolumes([target]).catch((e) => this.opts.log?.error('failed to delete subvolume', { subvolume: target, error: (e as Error).message }));
        throw wrapError('failed to commit', err);
      }
      await this.deleteSubvolumes([source]).catch((e) => this.opts.log?.warn('failed to delete subvolume', { subvolume: source, error: (e as Error).message }));
    });
  }

  /** Record and subvolume name go in one transaction (renamed to rm-<id>); the subvolume is deleted after. */
  async remove(_ctx: RequestContext, key: string): Promise<void> {
    await this.lock.run(async () => {
      const removed = this.ms.transaction(() => {
        let id: string;
        let kind: Kind;
        try {
          ({ id, kind } = this.ms.remove(key));
        } catch (err) {
          throw wrapError('failed to remove snapshot', err);
        }
        const source = this.pathOf(kind, id);
        const target = join(this.root, dirOfKind(kind), `rm-${id}`);
        try {
          renameSync(source, target);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
          throw err;
        }
        this.subvolIds.delete(source);
        return target;
      });
      if (removed) {
        await this.deleteSubvolumes([removed]).catch((e) => this.opts.log?.warn('failed to delete subvolume', { subvolume: removed, error: (e as Error).message }));
      }
    });
  }

  /**
   * Deletes subvolumes (and stray directories) in active/, view/ and snapshots/ that no
   * record of that kind owns: crash leftovers, interrupted removals and commits.
   */
  async cleanupOrphans(): Promise<void> {
    await this.lock.run(async () => {
      const ids = this.ms.idMap();
      const subvolumes: string[] = [];
      const plain: string[] = [];
      for (const kind of [Kind.Active, Kind.View, Kind.Committed]) {
        const dir = join(this.root, dirOfKind(kind));
        for (const name of readdirSync(dir)) {
          if (ids.get(name)?.kind === kind) continue;
          const p = join(dir, name);
          (lstatSync(p).ino === SUBVOLUME_ROOT_INO ? subvolumes : plain).push(p);
        }
      }
      if (subvolumes.length) await this.deleteSubvolumes(subvolumes).catch((e) => this.opts.log?.warn('failed to delete orphaned subvolumes', { error: (e as Error).message }));
      await Promise.all(plain.map((p) => rm(p, { recursive: true, force: true })));
    });
  }
}
