import { snapshotterSuite } from '../../../../core/snapshots/testsuite.js';
import { OverlaySnapshotter } from '../../../../plugins/snapshotter/overlayfs/overlay.js';
import { supportsIndex } from '../../../../plugins/snapshotter/overlayfs/support.js';

snapshotterSuite('overlayfs', async (root) => new OverlaySnapshotter(root, { indexOff: supportsIndex(), asyncRemove: true }));
snapshotterSuite('overlayfs-sync-remove', async (root) => new OverlaySnapshotter(root, { indexOff: supportsIndex() }), { chainLength: 10 });
