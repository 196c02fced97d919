// The layer engine against a real overlayfs: a layer applied in 'overlay' mode onto an empty
// upperdir must, once mounted over its lower, look exactly like the same layer applied in
// 'direct' mode onto a copy of the lower; and changes made through an overlay mount must come
// back out of writeDiff (overlay upperdir or mounted-view walk) and reproduce the merged view.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { execFileSync } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { applyLayer } from '../../../../../plugins/differ/walking/archive/apply.js';
import { writeDiff } from '../../../../../plugins/differ/walking/archive/diff.js';
import { buildTar, collect, snapshotTree, streamOf, isRoot } from '../../../../unit/plugins/differ/walking/archive/helpers.js';

const T = new Date('2020-05-05T05:05:05Z');

async function mountOverlay(lower: string, upper: string, work: string, target: string, readonly = false): Promise<void> {
  await fsp.mkdir(target, { recursive: true });
  const opts = readonly
    ? `ro,lowerdir=${upper}:${lower}`
    : `lowerdir=${lower},upperdir=${upper},workdir=${work},index=off,metacopy=off,redirect_dir=off`;
  await execa('mount', ['-t', 'overlay', 'overlay', '-o', opts, target]);
}

async function umount(target: string): Promise<void> {
  await execa('umount', [target]);
}

async function diff(lower: string | null, upper: string, opts: Parameters<typeof writeDiff>[3] = {}): Promise<Buffer> {
  const out = new PassThrough();
  const [buf] = await Promise.all([collect(out), writeDiff(lower, upper, out, opts)]);
  return buf;
}

const baseLayer = () =>
  buildTar([
    { path: 'etc/', type: 'Directory', mtime: T },
    { path: 'etc/passwd', data: 'root:x:0:0\n', mtime: T },
    { path: 'etc/shadow', data: 'root:*\n', mode: 0o600, mtime: T },
    { path: 'etc/conf.d/', type: 'Directory', mtime: T },
    { path: 'etc/conf.d/a.conf', data: 'a', mtime: T },
    { path: 'etc/conf.d/b.conf', data: 'b', mtime: T },
    { path: 'var/lib/db/', type: 'Directory', mtime: T },
    { path: 'var/lib/db/data1', data: 'd1', mtime: T },
    { path: 'var/lib/db/nested/data2', data: 'd2', mtime: T },
    { path: 'usr/bin/tool', data: 'v1', mode: 0o755, mtime: T },
    { path: 'usr/bin/tool2', type: 'Link', linkpath: 'usr/bin/tool', mode: 0o755, mtime: T },
    { path: 'bin', type: 'SymbolicLink', linkpath: 'usr/bin', mtime: T },
  ]);

const secondLayer = () =>
  buildTar([
    { path: 'etc/', type: 'Directory', mtime: T },
    { path: 'etc/.wh.shadow' },
    { path: 'etc/.wh.conf.d' },
    { path: 'etc/hostname', data: 'box\n', mtime: T },
    { path: 'var/lib/db/', type: 'Directory', mode: 0o700, mtime: T },
    { path: 'var/lib/db/.wh..wh..opq' },
    { path: 'var/lib/db/fresh', data: 'new db', mtime: T },
    { path: 'usr/bin/tool', data: 'v2', mode: 0o755, mtime: T },
  ]);

describe('layers on a real overlayfs', { skip: !isRoot && 'needs root (mount)' }, () => {
  let dir: string;
  const mounted: string[] = [];
  before(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'berth-differ-ovl-'));
  });
  after(async () => {
    for (const m of mounted.reverse()) await umount(m).catch(() => {});
    await fsp.rm(dir, { recursive: true, force: true });
  });
  const p = (...s: string[]) => path.join(dir, ...s);

  it('overlay-mode apply + mount equals direct-mode apply', async () => {
    await fsp.mkdir(p('l1'));
    await applyLayer(streamOf(baseLayer()), p('l1'), { mode: 'overlay' });
    await fsp.mkdir(p('l2'));
    const res = await applyLayer(streamOf(secondLayer()), p('l2'), { mode: 'overlay', parentRoots: [p('l1')] });
    assert.equal(res.entries, 8);

    // Read-only mount of both layers, as the overlay snapshotter's view of a committed parent.
    await mountOverlay(p('l1'), p('l2'), '', p('view'), true);
    mounted.push(p('view'));
    const merged = await snapshotTree(p('view'));
    assert.ok(!merged['etc/shadow'], 'whited-out file gone');
    assert.ok(!merged['etc/conf.d'], 'whited-out directory gone');
    assert.deepEqual(Object.keys(merged).filter((k) => k.startsWith('var/lib/db/')), ['var/lib/db/fresh'], 'opaque directory hides lower content');
    assert.equal(merged['var/lib/db']!.mode, 0o700);
    assert.equal(await fsp.readFile(p('view/usr/bin/tool'), 'utf8'), 'v2');
    assert.equal(await fsp.readFile(p('view/usr/bin/tool2'), 'utf8'), 'v1', 'the other link still has the old inode');
    assert.equal(await fsp.readFile(p('view/etc/hostname'), 'utf8'), 'box\n');

    // Same layers applied directly onto one tree.
    await fsp.mkdir(p('direct'));
    await applyLayer(streamOf(baseLayer()), p('direct'), { mode: 'direct' });
    await applyLayer(streamOf(secondLayer()), p('direct'), { mode: 'direct' });
    assert.deepEqual(await snapshotTree(p('direct')), merged);
  });

  it('changes made through a mount come back out of writeDiff and reproduce the merged view', async () => {
    // A container's writable layer over the two committed layers.
    await fsp.mkdir(p('rw-upper'));
    await fsp.mkdir(p('rw-work'));
    await fsp.mkdir(p('lowerview'));
    // lowerdir list: top layer first.
    await fsp.mkdir(p('rw'), { recursive: true });
    await execa('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${p('l2')}:${p('l1')},upperdir=${p('rw-upper')},workdir=${p('rw-work')},index=off,metacopy=off,redirect_dir=off`, p('rw')]);
    mounted.push(p('rw'));
    const rw = (s: string) => p('rw', s);
    await fsp.writeFile(rw('etc/passwd'), 'root:x:0:0\nuser:x:1000:1000\n');
    await fsp.rm(rw('etc/hostname'));
    await fsp.rm(rw('var/lib'), { recursive: true });
    await fsp.mkdir(rw('var/lib'));
    await fsp.writeFile(rw('var/lib/replaced'), 'r');
    await fsp.chmod(rw('usr/bin/tool'), 0o700);
    await fsp.mkdir(rw('home/user'), { recursive: true });
    await fsp.writeFile(rw('home/user/.profile'), 'export X=1\n');
    await fsp.symlink('/home/user', rw('homelink'));
    const expected = await snapshotTree(p('rw'));

    // 1) From the raw upperdir (whiteout devices, opaque xattr on the re-created var/lib).
    const fromUpper = await diff(p('view'), p('rw-upper'), { overlayUpper: true });
    // 2) containerd's way: walk the lower view against the mounted container view.
    const fromViews = await diff(p('view'), p('rw'));

    for (const [name, tar] of [['upperdir', fromUpper], ['views', fromViews]] as const) {
      const target = p(`rebuilt-${name}`);
      execFileSync('cp', ['-a', p('direct'), target]);
      await applyLayer(streamOf(tar), target, { mode: 'direct' });
      assert.deepEqual(await snapshotTree(target), expected, name);

      // The same diff applied as a new overlay layer, mounted over the old ones.
      const up = p(`ovl-${name}`);
      await fsp.mkdir(up);
      await applyLayer(streamOf(tar), up, { mode: 'overlay', parentRoots: [p('l2'), p('l1')] });
      const view = p(`view-${name}`);
      await fsp.mkdir(view);
      await execa('mount', ['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${up}:${p('l2')}:${p('l1')}`, view]);
      mounted.push(view);
      assert.deepEqual(await snapshotTree(view), expected, `${name} as overlay layer`);
    }
  });
});
