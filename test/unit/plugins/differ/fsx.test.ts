// core/sys/fsx.ts: mknod and the l*xattr calls through koffi, with Node-style errors.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fsx from '../../../../core/sys/fsx.js';

const isRoot = process.getuid?.() === 0;

describe('fsx', () => {
  let dir: string;
  before(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'berth-fsx-'));
  });
  after(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('makedev/major/minor round trip, including large numbers', () => {
    for (const [ma, mi] of [[0, 0], [1, 3], [8, 17], [259, 1048575], [4095, 255], [0xfffff, 0xfffff]] as const) {
      const dev = fsx.makedev(ma, mi);
      assert.deepEqual([fsx.major(dev), fsx.minor(dev)], [ma, mi]);
      assert.deepEqual([fsx.major(Number(dev)), fsx.minor(Number(dev))], [ma, mi]);
    }
    assert.equal(fsx.makedev(1, 3), 0x103n);
  });

  it('sets, lists, reads and removes xattrs with binary values', async () => {
    const f = path.join(dir, 'f');
    await fsp.writeFile(f, '');
    const bin = Buffer.from([0, 0xff, 0x0a, 0x3d, 0x80]);
    fsx.lsetxattr(f, 'user.bin', bin);
    fsx.lsetxattr(f, 'user.big', Buffer.alloc(4000, 9));
    fsx.lsetxattr(f, 'user.empty', Buffer.alloc(0));
    assert.deepEqual(fsx.llistxattr(f).filter((n) => n.startsWith('user.')).sort(), ['user.big', 'user.bin', 'user.empty']);
    assert.deepEqual(fsx.lgetxattr(f, 'user.bin'), bin);
    assert.equal(fsx.lgetxattr(f, 'user.big')!.length, 4000);
    assert.deepEqual(fsx.lgetxattr(f, 'user.empty'), Buffer.alloc(0));
    assert.equal(fsx.lgetxattr(f, 'user.missing'), undefined);
    assert.throws(() => fsx.lsetxattr(f, 'user.bin', 'x', fsx.XATTR_CREATE), { code: 'EEXIST' });
    fsx.lremovexattr(f, 'user.bin');
    assert.throws(() => fsx.lremovexattr(f, 'user.bin'), (e: NodeJS.ErrnoException) => e.code === 'ENODATA' && e.errno === -61 && e.syscall === 'lremovexattr' && e.path === f);
  });

  it('does not follow a final symlink', async () => {
    const target = path.join(dir, 'target');
    const link = path.join(dir, 'link');
    await fsp.writeFile(target, '');
    await fsp.symlink(target, link);
    fsx.lsetxattr(target, 'user.t', 'on target');
    assert.equal(fsx.lgetxattr(link, 'user.t'), undefined);
    // user.* attributes are not allowed on symlinks themselves.
    assert.throws(() => fsx.lsetxattr(link, 'user.t', 'x'), { code: 'EPERM' });
  });

  it('throws Node-style errors for missing paths', () => {
    const missing = path.join(dir, 'nope');
    assert.throws(() => fsx.lgetxattr(missing, 'user.x'), (e: NodeJS.ErrnoException) => e.code === 'ENOENT' && e.errno === -2 && e.syscall === 'lgetxattr' && e.path === missing && /^ENOENT: /.test(e.message));
    assert.throws(() => fsx.llistxattr(missing), { code: 'ENOENT' });
    assert.throws(() => fsx.mknod(path.join(missing, 'x'), fsx.S_IFIFO | 0o600), { code: 'ENOENT', syscall: 'mknod' });
  });

  it('creates fifos, and device nodes as root', { skip: !isRoot && 'needs root' }, async () => {
    fsx.mknod(path.join(dir, 'fifo'), fsx.S_IFIFO | 0o600);
    assert.ok((await fsp.lstat(path.join(dir, 'fifo'))).isFIFO());
    fsx.mknod(path.join(dir, 'wh'), fsx.S_IFCHR, 0);
    const wh = await fsp.lstat(path.join(dir, 'wh'));
    assert.ok(wh.isCharacterDevice());
    assert.equal(wh.rdev, 0);
    fsx.mknod(path.join(dir, 'loop'), fsx.S_IFBLK | 0o600, fsx.makedev(7, 200));
    const st = await fsp.lstat(path.join(dir, 'loop'));
    assert.ok(st.isBlockDevice());
    assert.deepEqual([fsx.major(st.rdev), fsx.minor(st.rdev)], [7, 200]);
    assert.throws(() => fsx.mknod(path.join(dir, 'loop'), fsx.S_IFCHR, 0), { code: 'EEXIST' });
  });
  it('marks a directory so that its new subdirectories are spread (ext4 TOPDIR flag); false where impossible', async (t) => {
    const d = path.join(dir, 'spread');
    await fsp.mkdir(d);
    const fsType = execFileSync('stat', ['-f', '-c', '%T', d], { encoding: 'utf8' }).trim();
    if (fsType !== 'ext2/ext3') {
      t.diagnostic(`${d} is on ${fsType}: only the refusal path runs`);
    } else {
      assert.equal(fsx.spreadNewSubdirectories(d), true);
      const attrs = execFileSync('lsattr', ['-d', d], { encoding: 'utf8' });
      assert.match(attrs.split(' ')[0]!, /T/);
      // Setting it again is a no-op that still succeeds.
      assert.equal(fsx.spreadNewSubdirectories(d), true);
    }
    assert.equal(fsx.spreadNewSubdirectories(path.join(dir, 'missing')), false);
    const file = path.join(dir, 'plain-file');
    await fsp.writeFile(file, '');
    assert.equal(fsx.spreadNewSubdirectories(file), false);
  });
});
