/**
 * What the built-in snapshotters (native, overlayfs, btrfs) have in common: records in a
 * MetaStore, changes under one lock, usage measured live for active snapshots and taken from
 * the record otherwise, and prepare/view as one create path. Each snapshotter supplies where
 * an active snapshot's files are, how a snapshot is mounted and how one is made.
 */
import type { Labels } from '../../core/metadata/metadata.js';
import type { Mount } from '../../core/mount/types.js';
import type { RequestContext } from '../../core/namespaces/namespaces.js';
import { Mutex } from '../../core/snapshots/mutex.js';
import {
  Kind, type SnapshotInfo, type SnapshotOptions, type Snapshotter, type Usage,
} from '../../core/snapshots/snapshotter.js';
import { wrapError, type MetaStore, type StoredSnapshot } from '../../core/snapshots/storage.js';
import { diskUsageSync } from '../../core/snapshots/usage.js';

export abstract class StoredSnapshotter implements Snapshotter {
  protected readonly lock = new Mutex();
  protected abstract readonly ms: MetaStore;
  /** How containerd's snapshotter words a failed Mounts lookup ("failed to get active mount"). */
  protected abstract readonly mountsFailure: string;

  /** The directory whose contents an active snapshot's usage counts. */
  protected abstract activeDir(id: string): string;
  protected abstract mountsOf(s: StoredSnapshot): Mount[] | Promise<Mount[]>;
  protected abstract createSnapshot(kind: Kind, key: string, parent: string, labels: Labels | undefined): Promise<Mount[]>;
  abstract remove(ctx: RequestContext, key: string): Promise<void>;

  async stat(_ctx: RequestContext, key: string): Promise<SnapshotInfo> {
    return this.ms.getInfo(key).info;
  }

  async update(_ctx: RequestContext, info: Pick<SnapshotInfo, 'name' | 'labels'>, fieldpaths?: readonly string[]): Promise<SnapshotInfo> {
    return this.lock.run(() => this.ms.updateInfo(info, fieldpaths));
  }

  /** Active: measured now. Committed and views: the value stored at commit. */
  async usage(ctx: RequestContext, key: string): Promise<Usage> {
    const { id, info, usage } = this.ms.getInfo(key);
    if (info.kind === Kind.Active) return diskUsageSync(this.activeDir(id), ctx.signal);
    return usage;
  }

  async mounts(_ctx: RequestContext, key: string): Promise<Mount[]> {
    let s: StoredSnapshot;
    try {
      s = this.ms.getSnapshot(key);
    } catch (err) {
      throw wrapError(this.mountsFailure, err);
    }
    return this.mountsOf(s);
  }

  prepare(_ctx: RequestContext, key: string, parent: string, opts?: SnapshotOptions): Promise<Mount[]> {
    return this.createSnapshot(Kind.Active, key, parent, opts?.labels);
  }

  view(_ctx: RequestContext, key: string, parent: string, opts?: SnapshotOptions): Promise<Mount[]> {
    return this.createSnapshot(Kind.View, key, parent, opts?.labels);
  }

  /** Records the active snapshot as committed under `name`, with its usage measured now. */
  async commit(ctx: RequestContext, name: string, key: string, opts?: SnapshotOptions): Promise<void> {
    await this.lock.run(() => {
      const { id, info } = this.ms.getInfo(key);
      // Only an active snapshot has a tree to measure; for anything else commitActive
      // reports the right error without writing.
      const usage = info.kind === Kind.Active ? diskUsageSync(this.activeDir(id), ctx.signal) : { size: 0, inodes: 0 };
      try {
        this.ms.commitActive(key, name, usage, opts?.labels);
      } catch (err) {
        throw wrapError('failed to commit snapshot', err);
      }
    });
  }

  async walk(_ctx: RequestContext, fn: (info: SnapshotInfo) => void | Promise<void>, filters?: readonly string[]): Promise<void> {
    for (const info of this.ms.walkInfo(filters)) await fn(info);
  }

  async close(): Promise<void> {
    this.ms.close();
  }
}
