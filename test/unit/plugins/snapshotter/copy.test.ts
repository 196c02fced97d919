import assert from 'node:assert/strict';
import { chmodSync, lchownSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readlinkSync, rmSync, symlinkSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { lgetxattr, lsetxattr, makedev, mknod, S_IFCHR, S_IFIFO } from '../../../../core/sys/fsx.js';
import { copyTree, lutimesNs } from '../../../../plugins/snapshotter/native/copy.js';

describe('native copyTree', () => {
  it('keeps owners, modes, xattrs, hard links, symlinks, devices and nanosecond times', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-copy-'));
    try {
      const src = join(dir, 'src');
      const dst = join(dir, 'dst');
      mkdirSync(src);
      mkdirSync(join(src, 'd'));
      writeFileSync(join(src, 'd', 'f'), 'file data');
      chmodSync(join(src, 'd', 'f'), 0o4750);
      lchownSync(join(src, 'd', 'f'), 123, 456);
      chmodSync(join(src, 'd', 'f'), 0o4750); // chown cleared setuid
      lsetxattr(join(src, 'd', 'f'), 'user.k', 'v');
      lsetxattr(join(src, 'd'), 'trusted.t', 'dir attr');
      linkSync(join(src, 'd', 'f'), join(src, 'hard'));
      symlinkSync('d/f', join(src, 'sym'));
      lchownSync(join(src, 'sym'), 7, 8);
      mknod(join(src, 'null'), S_IFCHR | 0o666, makedev(1, 3));
      mknod(join(src, 'fifo'), S_IFIFO | 0o600);
      chmodSync(join(src, 'd'), 0o1750);
      for (let i = 0; i < 200; i++) writeFileSync(join(src, 'd', `many-${i}`), String(i));
      lutimesNs(join(src, 'd', 'f'), 1_600_000_000_123_456_789n, 1_500_000_000_987_654_321n);
      lutimesNs(join(src, 'sym'), 1_400_000_000_000_000_001n, 1_400_000_000_000_000_002n);
      lutimesNs(join(src, 'd'), 1_300_000_000_000_000_003n, 1_300_000_000_000_000_004n);
      chmodSync(src, 0o711);

      mkdirSync(dst, 0o755);
      await copyTree(src, dst, { concurrency: 4 });

      const st = (p: string) => lstatSync(join(dst, p), { bigint: true });
      assert.equal(Number(st('.').mode) & 0o7777, 0o711, 'root attributes are copied');
      const f = st('d/f');
      assert.equal(Number(f.mode) & 0o7777, 0o4750);
      assert.equal([f.uid, f.gid].join(), '123,456');
      assert.equal(f.mtimeNs, 1_500_000_000_987_654_321n);
      assert.equal(f.atimeNs, 1_600_000_000_123_456_789n);
      assert.equal(readFileSync(join(dst, 'd', 'f'), 'utf8'), 'file data');
      assert.equal(lgetxattr(join(dst, 'd', 'f'), 'user.k')?.toString(), 'v');
      assert.equal(lgetxattr(join(dst, 'd'), 'trusted.t')?.toString(), 'dir attr');
      assert.equal(st('hard').ino, f.ino, 'hard link kept');
      assert.equal(f.nlink, 2n);
      assert.equal(readlinkSync(join(dst, 'sym')), 'd/f');
      assert.equal([st('sym').uid, st('sym').gid].join(), '7,8');
      assert.equal(st('sym').mtimeNs, 1_400_000_000_000_000_002n);
      assert.ok(st('null').isCharacterDevice());
      assert.equal(st('null').rdev, lstatSync(join(src, 'null'), { bigint: true }).rdev);
      assert.ok(st('fifo').isFIFO());
      assert.equal(Number(st('d').mode) & 0o7777, 0o1750);
      assert.equal(st('d').mtimeNs, 1_300_000_000_000_000_004n, 'directory times set after its children');
      assert.equal(readFileSync(join(dst, 'd', 'many-199'), 'utf8'), '199');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
