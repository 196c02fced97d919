import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { snapshotterSuite } from '../../../../core/snapshots/testsuite.js';
import { OverlaySnapshotter } from '../../../../plugins/snapshotter/overlayfs/overlay.js';
import { probeOverlayMount, removeStaleProbes, supportsIndex } from '../../../../plugins/snapshotter/overlayfs/support.js';
import { mountAll } from '../../../../core/mount/index.js';

snapshotterSuite('overlayfs', async (root) => new OverlaySnapshotter(root, { indexOff: supportsIndex(), asyncRemove: true }));
snapshotterSuite('overlayfs-sync-remove', async (root) => new OverlaySnapshotter(root, { indexOff: supportsIndex() }), { chainLength: 10 });

describe('overlayfs spare directories', () => {
  const ctx = {};
  const entries = (root: string) => readdirSync(join(root, 'snapshots'));
  const spares = (root: string) => entries(root).filter((n) => n.startsWith('spare-'));

  it('are made after a prepare, used by the next ones, left by cleanup and removed on close', async () => {
    const root = mkdtempSync(join(tmpdir(), 'berth-spares-'));
    const sn = new OverlaySnapshotter(root, { indexOff: supportsIndex(), asyncRemove: true });
    try {
      assert.deepEqual(entries(root), [], 'nothing made before the first use');
      await sn.prepare(ctx, 'a', '');
      await waitFor(() => spares(root).length === 2);
      const ready = spares(root);
      await sn.prepare(ctx, 'b', '');
      const b = (await sn.mounts(ctx, 'b'))[0]!.source;
      assert.ok(!spares(root).some((n) => b.includes(n)), 'the snapshot got its own id');
      assert.ok(ready.some((n) => !existsSync(join(root, 'snapshots', n))), 'a spare was renamed to it');
      assert.equal(readdirSync(b).length, 0, 'its upper dir is empty');
      await waitFor(() => spares(root).length === 2);
      await sn.remove(ctx, 'a');
      await sn.cleanup();
      assert.equal(spares(root).length, 2, 'cleanup leaves them');
      assert.equal(entries(root).length, 3, 'b and the two spares');
    } finally {
      await sn.close();
    }
    assert.deepEqual(spares(root), [], 'close removes them');
    rmSync(root, { recursive: true, force: true });
  });
});

describe('overlayfs support probe', () => {
  it('removes the probe a killed daemon left, its overlay still mounted', async () => {
    const root = mkdtempSync(join(tmpdir(), 'berth-probe-'));
    try {
      // What a daemon killed between the probe's mount and its unmount leaves behind.
      const probe = join(root, 'overlay-check-Left1');
      for (const d of ['lower1', 'lower2', 'upper', 'work', 'merged']) mkdirSync(join(probe, d), { recursive: true });
      const merged = join(probe, 'merged');
      await mountAll([{ type: 'overlay', source: 'overlay', options: [`lowerdir=${join(probe, 'lower2')}:${join(probe, 'lower1')}`, `upperdir=${join(probe, 'upper')}`, `workdir=${join(probe, 'work')}`] }], merged);
      assert.ok(mounted(merged));
      removeStaleProbes(root);
      await waitFor(() => !existsSync(probe));
      assert.equal(mounted(merged), false);
      await probeOverlayMount(root);
      await waitFor(() => readdirSync(root).length === 0);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

const mounted = (path: string) => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === path);

async function waitFor(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(ok(), `condition not reached: ${new Error().stack?.split('\n')[2]?.trim()}`);
}
