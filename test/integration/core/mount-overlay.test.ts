import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isInvalidArgument } from '../../../core/errdefs/errdefs.js';
import {
  fsTypeOf, isMountPoint, lookupMount, mountAll, mountInfo, unmountAll, withReadonlyTempMount, type Mount,
} from '../../../core/mount/index.js';

let base: string;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'berth-overlay-it-'));
});
after(async () => {
  // Unmount first: deleting through a live overlay would modify its layers.
  await unmountAll(base);
  assert.ok(!(await mountInfo()).some((m) => m.mountpoint.startsWith(base + '/')), 'mounts left behind');
  await rm(base, { recursive: true });
});

/** A containerd-shaped snapshot directory: <snapshots>/<id>/{fs,work}. */
async function layer(snapshots: string, id: number, files: Record<string, string> = {}): Promise<string> {
  const fs = join(snapshots, String(id), 'fs');
  await mkdir(fs, { recursive: true });
  await mkdir(join(snapshots, String(id), 'work'));
  for (const [name, content] of Object.entries(files)) await writeFile(join(fs, name), content);
  return fs;
}

function overlay(lowers: string[], upper?: string, work?: string): Mount {
  const options = ['index=off'];
  if (upper && work) options.push(`workdir=${work}`, `upperdir=${upper}`);
  options.push(`lowerdir=${lowers.join(':')}`);
  return { type: 'overlay', source: 'overlay', options };
}

describe('overlay', () => {
  it('merges two lowerdirs and writes into the upper dir', async () => {
    const snaps = join(base, 'two', 'snapshots');
    const l1 = await layer(snaps, 1, { 'a.txt': 'a', 'shared.txt': 'from 1' });
    const l2 = await layer(snaps, 2, { 'b.txt': 'b', 'shared.txt': 'from 2' });
    const upper = await layer(snaps, 3);
    const target = join(base, 'two', 'merged');
    await mkdir(target);
    // lowerdir lists the topmost layer first.
    await mountAll([overlay([l2, l1], upper, join(snaps, '3', 'work'))], target);
    try {
      assert.equal(await fsTypeOf(target), 'overlay');
      assert.deepEqual((await readdir(target)).sort(), ['a.txt', 'b.txt', 'shared.txt']);
      assert.equal(await readFile(join(target, 'shared.txt'), 'utf8'), 'from 2');

      await writeFile(join(target, 'new.txt'), 'new');
      await writeFile(join(target, 'a.txt'), 'changed');
      assert.equal(await readFile(join(upper, 'new.txt'), 'utf8'), 'new');
      assert.equal(await readFile(join(upper, 'a.txt'), 'utf8'), 'changed', 'copied up');
      assert.equal(await readFile(join(l1, 'a.txt'), 'utf8'), 'a', 'lower layer untouched');
      assert.deepEqual(await readdir(l2), ['b.txt', 'shared.txt']);
    } finally {
      await unmountAll(target);
    }
    assert.equal(await isMountPoint(target), false);
  });

  it('mounts 40 layers whose lowerdir option exceeds a page', async () => {
    const snaps = join(base, `long-${'a-rather-long-directory-name-to-inflate-paths-'.repeat(2)}`, 'io.containerd.snapshotter.v1.overlayfs', 'snapshots');
    const lowers: string[] = [];
    for (let id = 1; id <= 40; id++) lowers.unshift(await layer(snaps, id, { [`layer-${id}`]: String(id), 'top': String(id) }));
    const upper = await layer(snaps, 41);
    const m = overlay(lowers, upper, join(snaps, '41', 'work'));
    assert.ok(m.options.join(',').length > 4096, `option string is ${m.options.join(',').length} bytes`);

    const target = join(base, 'long-merged');
    await mkdir(target);
    await mountAll([m], target);
    try {
      const names = await readdir(target);
      assert.equal(names.length, 41);
      for (let id = 1; id <= 40; id++) assert.ok(names.includes(`layer-${id}`), `layer-${id}`);
      assert.equal(await readFile(join(target, 'top'), 'utf8'), '40', 'first lowerdir is the topmost');
      await writeFile(join(target, 'written'), 'w');
      assert.equal(await readFile(join(upper, 'written'), 'utf8'), 'w');
      assert.equal((await lookupMount(target)).fstype, 'overlay');
    } finally {
      await unmountAll(target);
    }
  });

  it('rejects options still longer than a page after compaction, before any syscall', async () => {
    const lowers: string[] = [];
    for (let id = 1; id <= 40; id++) lowers.push(join(base, `${id}-${'x'.repeat(120)}`, 'fs'));
    const target = join(base, 'never-mounted');
    await mkdir(target);
    await assert.rejects(mountAll([overlay(lowers)], target), (err) => isInvalidArgument(err));
    assert.equal(await isMountPoint(target), false);
  });

  it('read-only temp mounts include the upper layer and refuse writes', async () => {
    const snaps = join(base, 'ro', 'snapshots');
    const l1 = await layer(snaps, 1, { 'lower.txt': 'l' });
    const upper = await layer(snaps, 2, { 'upper.txt': 'u' });
    const m = overlay([l1], upper, join(snaps, '2', 'work'));
    await withReadonlyTempMount([m], async (root) => {
      assert.deepEqual((await readdir(root)).sort(), ['lower.txt', 'upper.txt']);
      await assert.rejects(writeFile(join(root, 'x'), 'x'), { code: 'EROFS' });
    }, { base: join(base, 'ro-temp') });
  });
});
