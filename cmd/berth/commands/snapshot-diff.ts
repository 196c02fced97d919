/**
 * `berth snapshots diff A [B]`: the layer made by the daemon's differ, written to stdout, as
 * ctr's: with one snapshot, what A adds to its parent; with two, what turns A into B. Committed snapshots are compared through
 * temporary views; an active one through its own mounts. Everything runs under a temporary
 * lease, so the diff blob is collected afterwards unless its labels keep it (`--keep`).
 */
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Connection } from '../../../client/connection.js';
import type { Mount } from '../../../api/gen/types/mount.js';

export interface DiffOptions {
  mediaType: string;
  ref: string;
  labels: Record<string, string>;
}

const KIND_ACTIVE = 2;

export async function writeSnapshotDiff(conn: Connection, snapshotter: string, idA: string, idB: string, opts: DiffOptions, out: Writable): Promise<void> {
  const { SnapshotsDefinition } = await import('../../../api/gen/services/snapshots/v1/snapshots.js');
  const { DiffDefinition } = await import('../../../api/gen/services/diff/v1/diff.js');
  const { withLease, uniquePart } = await import('../../../client/pull/lease.js');
  const { ContentClient } = await import('../../../client/images/content.js');
  const sn = conn.service(SnapshotsDefinition);

  await withLease(conn, async () => {
    const cleanups: string[] = [];
    /** Mounts of `key`: its own when active, else a temporary view's (`viewKey`). */
    const mountsOf = async (key: string, viewKey: string): Promise<Mount[]> => {
      const { info } = await sn.stat({ snapshotter, key });
      if (info?.kind === KIND_ACTIVE) return (await sn.mounts({ snapshotter, key })).mounts;
      const { mounts } = await sn.view({ snapshotter, key: viewKey, parent: key });
      cleanups.push(viewKey);
      return mounts;
    };
    try {
      let lower: Mount[];
      let upper: Mount[];
      if (idB === '') {
        const { info } = await sn.stat({ snapshotter, key: idA });
        const parent = info?.parent ?? '';
        const lowerKey = `${parent}-parent-view-${uniquePart()}`;
        lower = (await sn.view({ snapshotter, key: lowerKey, parent })).mounts;
        cleanups.push(lowerKey);
        upper = await mountsOf(idA, `${idA}-view-${uniquePart()}`);
      } else {
        // As ctr: the changes that turn A into B.
        lower = await mountsOf(idA, `${idA}-view-key`);
        upper = await mountsOf(idB, `${idB}-view-key`);
      }
      const { diff } = await conn.service(DiffDefinition).diff({ left: lower, right: upper, mediaType: opts.mediaType, ref: opts.ref, labels: opts.labels });
      if (!diff) throw new Error('the differ returned no descriptor');
      await pipeline(new ContentClient(conn).readStream(diff.digest), out, { end: false });
    } finally {
      for (const key of cleanups.reverse()) await sn.remove({ snapshotter, key }).catch(() => undefined);
    }
  });
}
