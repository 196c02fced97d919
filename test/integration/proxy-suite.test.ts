// containerd's snapshotter testsuite (core/snapshots/testsuite.ts) run through a proxy: the
// snapshotter under test is ProxySnapshotter, talking over a unix socket to
// client/snapshotservice serving a real overlayfs (and native) snapshotter. Every check must
// come out the same as against the backend itself: mounts, commits, views, removal rules,
// usage and the error classes all survive the gRPC round trip.
import { join } from 'node:path';
import { serveSnapshotter } from '../../client/snapshotservice/index.js';
import type { Snapshotter } from '../../core/snapshots/snapshotter.js';
import { snapshotterSuite } from '../../core/snapshots/testsuite.js';
import { Peer } from '../../plugins/proxy/peer.js';
import { NativeSnapshotter } from '../../plugins/snapshotter/native/native.js';
import { OverlaySnapshotter } from '../../plugins/snapshotter/overlayfs/overlay.js';
import { supportsIndex } from '../../plugins/snapshotter/overlayfs/support.js';
import { ProxySnapshotter } from '../../plugins/snapshotter/proxy/proxy.js';

/** A ProxySnapshotter in front of `backend`, served on a socket next to `root`; close() tears down all three. */
async function proxied(root: string, backend: Snapshotter): Promise<Snapshotter> {
  const address = join(root, '..', 'proxy.sock');
  const server = await serveSnapshotter(backend, address);
  const proxy = new ProxySnapshotter('suite', new Peer('proxy snapshotter "suite"', address));
  return Object.assign(proxy, {
    close: async () => {
      await ProxySnapshotter.prototype.close.call(proxy);
      await server.close();
      await backend.close();
    },
  });
}

snapshotterSuite('proxy→overlayfs', (root) => proxied(root, new OverlaySnapshotter(root, { indexOff: supportsIndex(), asyncRemove: true })), { chainLength: 32 });
snapshotterSuite('proxy→native', (root) => proxied(root, new NativeSnapshotter(root)), { chainLength: 16 });
