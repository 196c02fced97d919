import { snapshotterSuite } from '../../../../core/snapshots/testsuite.js';
import { NativeSnapshotter } from '../../../../plugins/snapshotter/native/native.js';

snapshotterSuite('native', async (root) => new NativeSnapshotter(root));
