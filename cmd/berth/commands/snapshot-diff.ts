/**
 * `berth snapshots diff A [B]`: the layer made by the daemon's differ, written to stdout, as
 * ctr's: with one snapshot, what A adds to its parent; with two, what turns A into B.
 * Committed snapshots are compared through temporary views, an active one through its own
 * mounts. Everything runs under a temporary lease, so the diff blob is collected afterwards
 * unless its labels keep it (`--keep`).
 */
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Connection } from '../../../client/connection.js';
import { ContentClient } from '../../../client/images/content.js';
import { uniquePart, withLease } from '../../../client/pull/lease.js';
import { DiffDefinition } from '../../../api/gen/services/diff/v1/diff.js';
import { Kind, SnapshotsDefinition, type Info } from '../../../api/gen/services/snapshots/v1/snapshots.js';
import type { Mount } from '../../../api/gen/types/mount.js';

export interface DiffOptions {
  mediaType: string;
  ref: string;
  labels: Record<string, string>;
}

export async function writeSnapshotDiff(conn: Connection, snapshotter: string, idA: string, idB: string, opts: DiffOptions, out: Writable): Promise<void> {
  const sn = conn.service(SnapshotsDefinition);
  const stat = async (key: string): Promise<Info | undefined> => (await sn.stat({ snapshotter, key })).info;

  await withLease(conn, async () => {
    const views: string[] = [];
    /** A temporary view of `parent` under `key`, removed at the end. */
    const view = async (key: string, parent: string): Promise<Mount[]> => {
      const { mounts } = await sn.view({ snapshotter, key, parent });
      views.push(key);
      return mounts;
    };
    /** Mounts of a snapshot: its own when active, else a view's under `viewKey`. */
    const mountsOf = async (info: Info | undefined, key: string, viewKey: string): Promise<Mount[]> =>
      info?.kind === Kind.ACTIVE ? (await sn.mounts({ snapshotter, key })).mounts : view(viewKey, key);
    try {
      let lower: Mount[];
      let upper: Mount[];
      if (idB === '') {
        const a = await stat(idA);
        const parent = a?.parent ?? '';
        lower = await view(`${parent}-parent-view-${uniquePart()}`, parent);
        upper = await mountsOf(a, idA, `${idA}-view-${uniquePart()}`);
      } else {
        // As ctr: the changes that turn A into B.
        lower = await mountsOf(await stat(idA), idA, `${idA}-view-key`);
        upper = await mountsOf(await stat(idB), idB, `${idB}-view-key`);
      }
      const { diff } = await conn.service(DiffDefinition).diff({ left: lower, right: upper, mediaType: opts.mediaType, ref: opts.ref, labels: opts.labels });
      if (!diff) throw new Error('the differ returned no descriptor');
      await pipeline(new ContentClient(conn).readStream(diff.digest), out, { end: false });
    } finally {
      for (const key of views.reverse()) await sn.remove({ snapshotter, key }).catch(() => undefined);
    }
  });
}
