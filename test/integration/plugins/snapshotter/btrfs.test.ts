import { after, before } from 'node:test';
import { snapshotterSuite } from '../../../../core/snapshots/testsuite.js';
import { lookupMount } from '../../../../core/mount/index.js';
import { BtrfsSnapshotter } from '../../../../plugins/snapshotter/btrfs/btrfs.js';
import { btrfsFixture, type BtrfsFixture } from './btrfs-fixture.js';

let fs: BtrfsFixture;
before(async () => { fs = await btrfsFixture(); });
after(async () => { await fs?.dispose(); });

snapshotterSuite('btrfs', async (root) => new BtrfsSnapshotter(root, (await lookupMount(root)).source), {
  base: () => fs.mountpoint,
  // Committed snapshots are read-only subvolumes: the whole filesystem is discarded instead.
  removeTemp: async () => undefined,
});
