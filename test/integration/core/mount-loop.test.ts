import assert from 'node:assert/strict';
import { closeSync, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { execa } from 'execa';
import {
  detachLoop, fsTypeOf, lookupMount, mountAll, mountInfo, setupLoop, unmountAll,
} from '../../../core/mount/index.js';

const has = async (tool: string) => (await execa('sh', ['-c', `command -v ${tool}`], { reject: false })).exitCode === 0;
const haveExt4 = (await has('mkfs.ext4')) && existsSync('/dev/loop-control');
const haveBtrfs = (await has('mkfs.btrfs')) && existsSync('/dev/loop-control');

let base: string;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'berth-loop-it-'));
});
after(async () => {
  await unmountAll(base);
  assert.ok(!(await mountInfo()).some((m) => m.mountpoint.startsWith(base + '/')), 'mounts left behind');
  await rm(base, { recursive: true });
});

async function image(name: string, size: string, mkfs: string[]): Promise<string> {
  const path = join(base, name);
  await execa('truncate', ['-s', size, path]);
  await execa(mkfs[0], [...mkfs.slice(1), path]);
  return path;
}

async function target(name: string): Promise<string> {
  const path = join(base, name);
  await mkdir(path);
  return path;
}

/** Autoclear detaches asynchronously after the last reference goes away. */
async function waitDetached(device: string): Promise<boolean> {
  const backing = `/sys/block/${basename(device)}/loop/backing_file`;
  for (let i = 0; i < 50 && existsSync(backing); i++) await sleep(20);
  return !existsSync(backing);
}

describe('loop mounts', () => {
  it('mounts an ext4 image with "loop" and auto-clears the device', { skip: !haveExt4 && 'mkfs.ext4 or loop devices missing' }, async () => {
    const img = await image('ext4.img', '16M', ['mkfs.ext4', '-q', '-F']);
    const mnt = await target('ext4');
    await mountAll([{ type: 'ext4', source: img, options: ['loop'] }], mnt);
    let device = '';
    try {
      device = (await lookupMount(mnt)).source;
      assert.match(device, /^\/dev\/loop\d+$/);
      assert.equal(await fsTypeOf(mnt), 'ext4');
      await writeFile(join(mnt, 'hello'), 'world');
    } finally {
      await unmountAll(mnt);
    }
    assert.equal(await waitDetached(device), true, `${device} still attached`);

    // Read-only loop: the data survived, writes are refused.
    await mountAll([{ type: 'ext4', source: img, options: ['loop', 'ro'] }], mnt);
    try {
      assert.equal(await readFile(join(mnt, 'hello'), 'utf8'), 'world');
      await assert.rejects(writeFile(join(mnt, 'other'), 'x'), { code: 'EROFS' });
    } finally {
      await unmountAll(mnt);
    }
  });

  it('passes a btrfs block device straight through', { skip: !haveBtrfs && 'mkfs.btrfs or loop devices missing' }, async () => {
    const img = await image('btrfs.img', '128M', ['mkfs.btrfs', '-q', '-f']);
    const mnt = await target('btrfs');
    const device = setupLoop(img);
    try {
      await mountAll([{ type: 'btrfs', source: device.path, options: ['noatime'] }], mnt);
      assert.equal(await fsTypeOf(mnt), 'btrfs');
      assert.equal((await lookupMount(mnt)).source, device.path);
      await writeFile(join(mnt, 'f'), 'x');
    } finally {
      await unmountAll(mnt);
      closeSync(device.fd);
      detachLoop(device.path);
    }
    assert.equal(await waitDetached(device.path), true);
  });
});
