import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  fsTypeOf, isMountPoint, lookupMount, mountAll, mountInfo, mountOne, unmount, unmountAll, withTempMount,
} from '../../../core/mount/index.js';

let base: string;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'berth-mount-it-'));
});
after(async () => {
  // Unmount whatever a failed test left below base before deleting anything: a recursive
  // delete through a live bind mount would destroy the bind's source.
  await unmountAll(base);
  assert.ok(!(await mountInfo()).some((m) => m.mountpoint.startsWith(base + '/')), 'mounts left behind');
  await rm(base, { recursive: true });
});

let counter = 0;
async function dir(name: string): Promise<string> {
  const path = join(base, `${name}-${counter++}`);
  await mkdir(path, { recursive: true });
  return path;
}

describe('tmpfs', () => {
  it('mounts with data and per-mount flags, then unmounts', async () => {
    const target = await dir('tmpfs');
    await mountAll([{ type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'size=2m'] }], target);
    try {
      assert.equal(await isMountPoint(target), true);
      assert.equal(await fsTypeOf(join(target, 'not-yet-there')), 'tmpfs');
      const info = await lookupMount(target);
      assert.match(info.options, /\bnosuid\b/);
      assert.match(info.options, /\bnodev\b/);
      assert.match(info.vfsOptions, /size=2048k/);
    } finally {
      await unmountAll(target);
    }
    assert.equal(await isMountPoint(target), false);
  });

  it('remount,ro turns an existing mount read-only', async () => {
    const target = await dir('remount');
    await mountAll([{ type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] }], target);
    try {
      await writeFile(join(target, 'before'), 'x');
      await mountOne({ type: 'tmpfs', source: 'tmpfs', options: ['remount', 'ro'] }, target);
      await assert.rejects(writeFile(join(target, 'after'), 'x'), { code: 'EROFS' });
      assert.equal(await readFile(join(target, 'before'), 'utf8'), 'x');
    } finally {
      await unmountAll(target);
    }
  });

  it('unmountAll removes stacked mounts; unmount/unmountAll tolerate non-mounts', async () => {
    const target = await dir('stack');
    await mountAll([
      { type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] },
      { type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] },
    ], target);
    assert.equal((await mountInfo()).filter((m) => m.mountpoint === target).length, 2);
    await unmountAll(target);
    assert.equal(await isMountPoint(target), false);
    await unmount(target);
    await unmountAll(join(base, 'does-not-exist'));
  });

  it('retries an unmount that is briefly busy', async () => {
    const target = await dir('busy');
    await mountAll([{ type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] }], target);
    const handle = await open(join(target, 'held'), 'w');
    setTimeout(() => void handle.close(), 60);
    await unmount(target);
    assert.equal(await isMountPoint(target), false);
  });

  it('gives up with EBUSY when the mount stays busy', async () => {
    const target = await dir('busy-forever');
    await mountAll([{ type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] }], target);
    const handle = await open(join(target, 'held'), 'w');
    try {
      await assert.rejects(unmount(target), { code: 'EBUSY', syscall: 'umount2' });
    } finally {
      await handle.close();
      await unmountAll(target);
    }
  });

  it('rolls back earlier mounts when a later one fails', async () => {
    const target = await dir('rollback');
    await assert.rejects(
      mountAll([
        { type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] },
        { type: 'tmpfs', source: 'tmpfs', options: ['no-such-tmpfs-option=1'] },
      ], target),
      { code: 'EINVAL', syscall: 'mount' },
    );
    assert.equal(await isMountPoint(target), false);
  });
});

describe('bind mounts', () => {
  async function source(): Promise<string> {
    const src = await dir('src');
    await writeFile(join(src, 'file'), 'hello');
    return src;
  }

  it('ro bind is really read-only while the source stays writable', async () => {
    const src = await source();
    const target = await dir('bind-ro');
    await mountAll([{ type: 'bind', source: src, options: ['rbind', 'ro'] }], target);
    try {
      assert.equal(await readFile(join(target, 'file'), 'utf8'), 'hello');
      await assert.rejects(writeFile(join(target, 'new'), 'x'), { code: 'EROFS' });
      await writeFile(join(src, 'new'), 'x');
      assert.match((await lookupMount(target)).options, /^ro\b/);
    } finally {
      await unmountAll(target);
    }
  });

  it('applies nosuid/nodev/noexec through the bind remount', async () => {
    const target = await dir('bind-flags');
    await mountAll([{ type: 'bind', source: await source(), options: ['bind', 'nosuid', 'nodev', 'noexec'] }], target);
    try {
      const { options } = await lookupMount(target);
      for (const flag of ['rw', 'nosuid', 'nodev', 'noexec']) assert.match(options, new RegExp(`\\b${flag}\\b`));
    } finally {
      await unmountAll(target);
    }
  });

  it('rbind carries submounts, bind does not; unmountAll clears both', async () => {
    const src = await source();
    await mkdir(join(src, 'sub'));
    await mountAll([{ type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] }], join(src, 'sub'));
    await writeFile(join(src, 'sub', 'inner'), 'nested');
    const recursive = await dir('rbind');
    const plain = await dir('bind');
    try {
      await mountAll([{ type: 'bind', source: src, options: ['rbind'] }], recursive);
      await mountAll([{ type: 'bind', source: src, options: ['bind'] }], plain);
      assert.equal(await readFile(join(recursive, 'sub', 'inner'), 'utf8'), 'nested');
      assert.deepEqual(await readdir(join(plain, 'sub')), []);
      assert.equal(await isMountPoint(join(recursive, 'sub')), true);

      await unmountAll(recursive);
      assert.equal(await isMountPoint(recursive), false);
      assert.equal(await isMountPoint(join(recursive, 'sub')), false);
      assert.equal(await readFile(join(src, 'sub', 'inner'), 'utf8'), 'nested', 'source submount untouched');
    } finally {
      await unmountAll(recursive);
      await unmountAll(plain);
      await unmountAll(join(src, 'sub'));
    }
  });

  it('sets propagation after mounting', async () => {
    const shared = await dir('shared');
    const priv = await dir('private');
    try {
      await mountAll([{ type: 'bind', source: await source(), options: ['rbind', 'rshared'] }], shared);
      await mountAll([{ type: 'bind', source: await source(), options: ['bind', 'private'] }], priv);
      assert.match((await lookupMount(shared)).optional, /\bshared:\d+/);
      assert.equal((await lookupMount(priv)).optional, '');
    } finally {
      await unmountAll(shared);
      await unmountAll(priv);
    }
  });

  it('mounts an entry with a target below the root', async () => {
    const src = await source();
    await mkdir(join(src, 'dev'));
    const root = await dir('subtarget');
    try {
      await mountAll([
        { type: 'bind', source: src, options: ['rbind'] },
        { type: 'tmpfs', source: 'tmpfs', target: '/dev', options: ['size=1m'] },
      ], root);
      assert.equal(await fsTypeOf(join(root, 'dev')), 'tmpfs');
      assert.equal(await isMountPoint(join(src, 'dev')), false, 'lands in the bind, not the source');
    } finally {
      await unmountAll(root);
    }
  });
});

describe('withTempMount', () => {
  const tmpfs = [{ type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] }];

  it('mounts for the callback and cleans up afterwards', async () => {
    const tempBase = await dir('temp-ok');
    let seen = '';
    const result = await withTempMount(tmpfs, async (root) => {
      seen = root;
      assert.ok(root.startsWith(tempBase + '/'));
      assert.equal(await fsTypeOf(root), 'tmpfs');
      return 42;
    }, { base: tempBase });
    assert.equal(result, 42);
    assert.equal(existsSync(seen), false);
    assert.deepEqual(await readdir(tempBase), []);
  });

  it('still unmounts and removes the directory when the callback throws', async () => {
    const tempBase = await dir('temp-throw');
    const boom = new Error('boom');
    let seen = '';
    await assert.rejects(withTempMount(tmpfs, (root) => {
      seen = root;
      throw boom;
    }, { base: tempBase }), (err) => err === boom);
    assert.equal(existsSync(seen), false);
    assert.ok(!(await mountInfo()).some((m) => m.mountpoint.startsWith(tempBase + '/')));
  });

  it('reports a mount failure and leaves nothing behind', async () => {
    const tempBase = await dir('temp-fail');
    let called = false;
    await assert.rejects(
      withTempMount([{ type: 'tmpfs', source: 'tmpfs', options: ['bogus-option=1'] }], () => { called = true; }, { base: tempBase }),
      { code: 'EINVAL' },
    );
    assert.equal(called, false);
    assert.deepEqual(await readdir(tempBase), []);
  });
});
