import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { SkipPluginError } from '../../../../core/plugin/types.js';
import { OverlaySnapshotter } from '../../../../plugins/snapshotter/overlayfs/overlay.js';
import { supportsDType } from '../../../../plugins/snapshotter/overlayfs/support.js';
import { NativeSnapshotter } from '../../../../plugins/snapshotter/native/native.js';
import { btrfsPlugin } from '../../../../plugins/snapshotter/btrfs/plugin.js';
import { silentLogger } from '../../../../core/log/logger.js';

const ctx = { namespace: 'test' };
let dir: string;
beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'berth-snapmounts-')); });
afterEach(() => { rmSync(dir, { recursive: true, force: true }); });

describe('overlayfs mounts', () => {
  it('binds a lone layer, overlays a stack nearest-first, binds a one-layer view read-only', async () => {
    const sn = new OverlaySnapshotter(dir, { indexOff: true, mountOptions: ['volatile'] });
    const s = (id: number, p = 'fs') => join(dir, 'snapshots', String(id), p);
    assert.deepEqual(await sn.prepare(ctx, 'a', ''), [{ type: 'bind', source: s(1), options: ['rw', 'rbind'] }]);
    assert.deepEqual(await sn.view(ctx, 'v0', ''), [{ type: 'bind', source: s(2), options: ['ro', 'rbind'] }]);
    await sn.commit(ctx, 'c1', 'a');
    assert.deepEqual(await sn.view(ctx, 'v1', 'c1'), [{ type: 'bind', source: s(1), options: ['ro', 'rbind'] }]);
    assert.deepEqual(await sn.prepare(ctx, 'b', 'c1'), [{
      type: 'overlay', source: 'overlay',
      options: ['index=off', 'volatile', `workdir=${s(4, 'work')}`, `upperdir=${s(4)}`, `lowerdir=${s(1)}`],
    }]);
    await sn.commit(ctx, 'c2', 'b');
    assert.deepEqual(await sn.view(ctx, 'v2', 'c2'), [{ type: 'overlay', source: 'overlay', options: ['index=off', 'volatile', `lowerdir=${s(4)}:${s(1)}`] }]);
    assert.deepEqual(await sn.mounts(ctx, 'v2'), await sn.mounts(ctx, 'v2'));
    assert.ok(!existsSync(s(3, 'work')), 'views have no work dir');
    await sn.close();
  });

  it('labels upper dirs when asked', async () => {
    const sn = new OverlaySnapshotter(dir, { upperdirLabel: true });
    await sn.prepare(ctx, 'a', '', { labels: { x: 'y' } });
    const upper = join(dir, 'snapshots', '1', 'fs');
    assert.deepEqual((await sn.stat(ctx, 'a')).labels, { x: 'y', 'containerd.io/snapshot/overlay.upperdir': upper });
    assert.deepEqual((await sn.update(ctx, { name: 'a', labels: {} })).labels, { 'containerd.io/snapshot/overlay.upperdir': upper });
    const walked: Record<string, string>[] = [];
    await sn.walk(ctx, (i) => { walked.push(i.labels); });
    assert.deepEqual(walked, [{ 'containerd.io/snapshot/overlay.upperdir': upper }]);
    await sn.close();
  });

  it('keeps removed directories until cleanup with async remove, deletes them at once otherwise', async () => {
    // Snapshots' directories only: the spare-* ones made ahead of time are no snapshot's.
    const snapshotDirs = (root: string) => readdirSync(join(root, 'snapshots')).filter((n) => !n.startsWith('spare-'));
    const lazy = new OverlaySnapshotter(join(dir, 'lazy'), { asyncRemove: true });
    await lazy.prepare(ctx, 'a', '');
    await lazy.remove(ctx, 'a');
    assert.deepEqual(snapshotDirs(join(dir, 'lazy')), ['1']);
    await lazy.prepare(ctx, 'a', '');
    await lazy.cleanup();
    assert.deepEqual(snapshotDirs(join(dir, 'lazy')), ['2']);
    const eager = new OverlaySnapshotter(join(dir, 'eager'), {});
    await eager.prepare(ctx, 'a', '');
    await eager.remove(ctx, 'a');
    assert.deepEqual(snapshotDirs(join(dir, 'eager')), []);
    await lazy.close();
    await eager.close();
  });

  it('checks d_type on the backing filesystem', () => {
    assert.equal(supportsDType(dir), true);
    assert.deepEqual(readdirSync(dir), [], 'the probe file is gone');
  });
});

describe('native mounts', () => {
  it('binds with [rbind, rw|ro]; a view of a parent binds the parent read-only', async () => {
    const sn = new NativeSnapshotter(dir);
    const s = (id: number) => join(dir, 'snapshots', String(id));
    assert.deepEqual(await sn.prepare(ctx, 'a', ''), [{ type: 'bind', source: s(1), options: ['rbind', 'rw'] }]);
    writeFileSync(join(s(1), 'f'), 'data');
    await sn.commit(ctx, 'c', 'a');
    assert.deepEqual(await sn.view(ctx, 'v', 'c'), [{ type: 'bind', source: s(1), options: ['rbind', 'ro'] }]);
    assert.deepEqual(await sn.view(ctx, 'v0', ''), [{ type: 'bind', source: s(3), options: ['rbind', 'ro'] }]);
    assert.deepEqual(await sn.prepare(ctx, 'b', 'c'), [{ type: 'bind', source: s(4), options: ['rbind', 'rw'] }]);
    assert.deepEqual(readdirSync(s(4)), ['f'], 'the child is a copy of its parent');
    assert.ok(!existsSync(s(2)), 'a view of a parent has no directory of its own');
    await sn.remove(ctx, 'b');
    assert.ok(!existsSync(s(4)));
    await sn.close();
  });

  it('removes orphaned directories at boot', async () => {
    const sn = new NativeSnapshotter(dir);
    await sn.prepare(ctx, 'a', '');
    mkdirSync(join(dir, 'snapshots', '77'));
    mkdirSync(join(dir, 'snapshots', 'new-123'));
    mkdirSync(join(dir, 'snapshots', 'rm-5'));
    await sn.cleanupOrphans();
    assert.deepEqual(readdirSync(join(dir, 'snapshots')), ['1']);
    await sn.close();
  });
});

describe('snapshotter plugins', () => {
  const initContext = (root: string, config: object) => ({
    root: join(root, 'plugin-root'), config, log: silentLogger, meta: { platforms: [], exports: {} as Record<string, string>, capabilities: [] },
  });

  it('btrfs skips on another filesystem with containerd\'s message', async () => {
    const ic = initContext(dir, { root_path: join(dir, 'btrfs') });
    await assert.rejects(Promise.resolve().then(() => btrfsPlugin.init(ic as never)), (e: unknown) => {
      assert.ok(e instanceof SkipPluginError);
      assert.match(e.message, new RegExp(`^path ${join(dir, 'btrfs')} \\(\\w+\\) must be a btrfs filesystem to be used with the btrfs snapshotter: skip plugin$`));
      return true;
    });
    assert.equal(ic.meta.exports.root, join(dir, 'btrfs'));
    assert.ok(existsSync(join(dir, 'btrfs')));
  });
});
