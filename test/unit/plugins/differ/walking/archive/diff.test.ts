// writeDiff: entries produced for added/changed/deleted paths, header details, hardlinks,
// determinism, overlay upperdirs, and the round trip writeDiff -> applyLayer.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { execFileSync } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import * as net from 'node:net';
import { writeDiff, compareNames } from '../../../../../../plugins/differ/walking/archive/diff.js';
import { applyLayer } from '../../../../../../plugins/differ/walking/archive/apply.js';
import * as fsx from '../../../../../../core/sys/fsx.js';
import { collect, listTar, makeSandbox, snapshotTree, streamOf, isRoot, type Sandbox } from './helpers.js';

async function diffTar(lower: string | null, upper: string, opts: Parameters<typeof writeDiff>[3] = {}): Promise<Buffer> {
  const out = new PassThrough();
  const [buf] = await Promise.all([collect(out), writeDiff(lower, upper, out, opts)]);
  return buf;
}

const T = new Date('2022-02-02T02:02:02Z');

async function write(root: string, rel: string, data: string | Buffer, mode = 0o644, mtime = T) {
  const p = path.join(root, rel);
  await fsp.mkdir(path.dirname(p), { recursive: true });
  await fsp.writeFile(p, data);
  await fsp.chmod(p, mode);
  await fsp.utimes(p, mtime, mtime);
}

describe('compareNames', () => {
  it('orders by UTF-8 bytes', () => {
    assert.ok(compareNames('a', 'b') < 0);
    assert.ok(compareNames('B', 'a') < 0);
    assert.ok(compareNames('a', 'a.b') < 0);
    assert.ok(compareNames('\uFFFD', '\u{1F600}') < 0, 'BMP char above surrogates sorts before astral (bytes, not UTF-16)');
  });
});

describe('writeDiff', { skip: !isRoot && 'needs root' }, () => {
  let sb: Sandbox;
  before(async () => {
    sb = await makeSandbox();
  });
  after(async () => {
    await sb.cleanup();
  });

  it('writes every path of the upper tree when there is no lower', async () => {
    const up = path.join(sb.dir, 'add-upper');
    await write(up, 'b/file', 'hello', 0o4755);
    await write(up, 'a.b', 'x');
    await write(up, 'a/z', 'z');
    await fsp.link(path.join(up, 'a/z'), path.join(up, 'b/zz'));
    await fsp.symlink('../a/z', path.join(up, 'b/sym'));
    fsx.mknod(path.join(up, 'b/null'), fsx.S_IFCHR | 0o666, fsx.makedev(1, 3));
    await fsp.chmod(path.join(up, 'b/null'), 0o666); // mknod is subject to the umask
    fsx.mknod(path.join(up, 'b/fifo'), fsx.S_IFIFO | 0o600);
    const cap = Buffer.from([1, 0, 0, 2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    fsx.lsetxattr(path.join(up, 'b/file'), 'security.capability', cap);
    fsx.lsetxattr(path.join(up, 'b/file'), 'user.other', 'ignored by default');
    await fsp.chown(path.join(up, 'a'), 11, 12);
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(path.join(up, 'b/sock'), r));
    try {
      const entries = await listTar(await diffTar(null, up));
      assert.deepEqual(
        entries.map((e) => [e.path, e.type]),
        [
          ['a/', 'Directory'],
          ['a/z', 'File'],
          ['a.b', 'File'],
          ['b/', 'Directory'],
          ['b/fifo', 'FIFO'],
          ['b/file', 'File'],
          ['b/null', 'CharacterDevice'],
          ['b/sym', 'SymbolicLink'],
          ['b/zz', 'Link'],
        ],
      );
      const by = Object.fromEntries(entries.map((e) => [e.path, e]));
      assert.deepEqual([by['a/']!.uid, by['a/']!.gid], [11, 12]);
      assert.equal(by['b/file']!.mode, 0o4755);
      assert.equal(by['b/file']!.data.toString(), 'hello');
      assert.equal(by['b/file']!.mtime!.getTime(), T.getTime());
      assert.deepEqual(by['b/file']!.pax, { 'SCHILY.xattr.security.capability': cap });
      assert.deepEqual([by['b/null']!.devmaj, by['b/null']!.devmin, by['b/null']!.mode], [1, 3, 0o666]);
      assert.equal(by['b/sym']!.linkpath, '../a/z');
      assert.equal(by['b/zz']!.linkpath, 'a/z');
      assert.equal(by['b/zz']!.size, 0);

      const all = await listTar(await diffTar(null, up, { xattrs: 'all' }));
      const file = all.find((e) => e.path === 'b/file')!;
      assert.deepEqual(Object.keys(file.pax).sort(), ['SCHILY.xattr.security.capability', 'SCHILY.xattr.user.other']);
    } finally {
      srv.close();
    }
  });

  it('emits changes, whiteouts and needed parents against a lower tree', async () => {
    const lo = path.join(sb.dir, 'chg-lower');
    const up = path.join(sb.dir, 'chg-upper');
    await write(lo, 'etc/same', 'same');
    await write(lo, 'etc/content', 'aaaa');
    await write(lo, 'etc/mode', 'm');
    await write(lo, 'etc/mtime', 'm');
    await write(lo, 'gone/deep/file', 'g');
    await write(lo, 'gone.txt', 'g');
    await write(lo, 'dir2file/x', 'x');
    await write(lo, 'file2dir', 'f');
    await write(lo, 'usr/share/doc/unchanged', 'u');
    await write(lo, 'usr/share/doc/removed', 'r');
    await fsp.symlink('a', path.join(lo, 'link'));
    execFileSync('cp', ['-a', lo, up]);
    await write(up, 'etc/content', 'bbbb'); // same size, same whole-second mtime: content decides
    await fsp.chmod(path.join(up, 'etc/mode'), 0o600);
    await fsp.utimes(path.join(up, 'etc/mtime'), new Date(T.getTime() + 1000), new Date(T.getTime() + 1000));
    await fsp.rm(path.join(up, 'gone'), { recursive: true });
    await fsp.rm(path.join(up, 'gone.txt'));
    await fsp.rm(path.join(up, 'dir2file'), { recursive: true });
    await write(up, 'dir2file', 'file now');
    await fsp.rm(path.join(up, 'file2dir'));
    await write(up, 'file2dir/inner', 'i');
    await fsp.rm(path.join(up, 'usr/share/doc/removed'));
    await fsp.rm(path.join(up, 'link'));
    await fsp.symlink('b', path.join(up, 'link'));
    await write(up, 'new/file', 'n');

    const tar = await diffTar(lo, up);
    const names = (await listTar(tar)).map((e) => e.path);
    assert.deepEqual(names, [
      'dir2file',
      'etc/',
      'etc/content',
      'etc/mode',
      'etc/mtime',
      'file2dir/',
      'file2dir/inner',
      '.wh.gone',
      '.wh.gone.txt',
      'link',
      'new/',
      'new/file',
      'usr/',
      'usr/share/',
      'usr/share/doc/',
      'usr/share/doc/.wh.removed',
    ]);
    const whiteout = (await listTar(tar)).find((e) => e.path === '.wh.gone')!;
    assert.deepEqual([whiteout.type, whiteout.size, whiteout.mode, whiteout.mtime!.getTime()], ['File', 0, 0, 0]);
    // Deterministic: the same trees give the same bytes.
    assert.deepEqual(await diffTar(lo, up), tar);

    // Round trip: applying the diff onto a copy of lower reproduces upper.
    const copy = path.join(sb.dir, 'chg-copy');
    execFileSync('cp', ['-a', lo, copy]);
    await applyLayer(streamOf(tar), copy, { mode: 'direct' });
    assert.deepEqual(await snapshotTree(copy), await snapshotTree(up));
  });

  it('keeps hardlinks together, including to unchanged names', async () => {
    const lo = path.join(sb.dir, 'hl-lower');
    const up = path.join(sb.dir, 'hl-upper');
    await write(lo, 'a/one', 'SHARED');
    await write(lo, 'b-two', 'shared');
    execFileSync('cp', ['-a', lo, up]);
    // In upper both names are one inode: 'a/one' still looks unchanged, 'b-two' changed. The
    // unchanged name is written as a link once the inode has been written under 'b-two'.
    await fsp.rm(path.join(up, 'b-two'));
    await fsp.link(path.join(up, 'a/one'), path.join(up, 'b-two'));
    await write(up, 'c/new', 'fresh');
    await fsp.link(path.join(up, 'c/new'), path.join(up, 'c/new2'));
    const tar = await diffTar(lo, up);
    const entries = await listTar(tar);
    assert.deepEqual(
      entries.map((e) => [e.path, e.type, e.linkpath ?? '']),
      [
        ['b-two', 'File', ''],
        ['a/', 'Directory', ''],
        ['a/one', 'Link', 'b-two'],
        ['c/', 'Directory', ''],
        ['c/new', 'File', ''],
        ['c/new2', 'Link', 'c/new'],
      ],
    );
    const copy = path.join(sb.dir, 'hl-copy');
    execFileSync('cp', ['-a', lo, copy]);
    await applyLayer(streamOf(tar), copy, { mode: 'direct' });
    assert.deepEqual(await snapshotTree(copy, { nlink: true }), await snapshotTree(up, { nlink: true }));
    assert.equal((await fsp.stat(path.join(copy, 'a/one'))).ino, (await fsp.stat(path.join(copy, 'b-two'))).ino);
  });

  it('reads an overlay upperdir: whiteout devices and opaque directories', async () => {
    const lo = path.join(sb.dir, 'ov-lower');
    const up = path.join(sb.dir, 'ov-upper');
    await write(lo, 'etc/keep', 'k');
    await write(lo, 'etc/del', 'd');
    await write(lo, 'opq/old1', 'o');
    await write(lo, 'opq/sub/old2', 'o');
    await write(lo, 'copyup', 'same');
    await fsp.mkdir(path.join(up, 'etc'), { recursive: true });
    fsx.mknod(path.join(up, 'etc/del'), fsx.S_IFCHR, 0);
    await fsp.mkdir(path.join(up, 'opq'));
    fsx.lsetxattr(path.join(up, 'opq'), 'trusted.overlay.opaque', 'y');
    await write(up, 'opq/fresh', 'f');
    execFileSync('cp', ['-a', path.join(lo, 'copyup'), path.join(up, 'copyup')]);
    await write(up, 'added', 'a');

    const tar = await diffTar(lo, up, { overlayUpper: true });
    const names = (await listTar(tar)).map((e) => e.path);
    assert.deepEqual(names, ['added', 'etc/', 'etc/.wh.del', 'opq/', 'opq/.wh..wh..opq', 'opq/fresh']);
    // Without lower, copied-up files are written too.
    const names2 = (await listTar(await diffTar(null, up, { overlayUpper: true }))).map((e) => e.path);
    assert.ok(names2.includes('copyup'));

    const copy = path.join(sb.dir, 'ov-copy');
    execFileSync('cp', ['-a', lo, copy]);
    await applyLayer(streamOf(tar), copy, { mode: 'direct' });
    const snap = await snapshotTree(copy);
    assert.deepEqual(Object.keys(snap).sort(), ['added', 'copyup', 'etc', 'etc/keep', 'opq', 'opq/fresh']);
  });

  it('round trips a larger random tree with deletions', async () => {
    const lo = path.join(sb.dir, 'rt-lower');
    const up = path.join(sb.dir, 'rt-upper');
    let seed = 42;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let i = 0; i < 300; i++) {
      const rel = `d${rnd(6)}/e${rnd(4)}/f${i}`;
      await write(lo, rel, Buffer.alloc(rnd(20000), i & 0xff), [0o644, 0o755, 0o600][rnd(3)]!);
    }
    await fsp.symlink('d0', path.join(lo, 'toD0'));
    execFileSync('cp', ['-a', lo, up]);
    const files = (await fsp.readdir(up, { recursive: true })) as string[];
    for (const f of files.sort()) {
      const p = path.join(up, f);
      let st;
      try {
        st = await fsp.lstat(p);
      } catch {
        continue; // parent already removed
      }
      if (!st.isFile()) continue;
      switch (rnd(8)) {
        case 0:
          await fsp.rm(p);
          break;
        case 1:
          await fsp.writeFile(p, 'rewritten ' + f);
          break;
        case 2:
          await fsp.chmod(p, 0o640);
          break;
        case 3:
          await fsp.chown(p, 100 + rnd(5), 200);
          break;
      }
    }
    await fsp.rm(path.join(up, 'd1/e1'), { recursive: true, force: true });
    await fsp.rm(path.join(up, 'toD0'));
    await fsp.mkdir(path.join(up, 'toD0'));
    await write(up, 'toD0/inside', 'was a symlink');
    fsx.lsetxattr(path.join(up, 'toD0/inside'), 'user.tag', Buffer.from([0, 1, 2, 255]));

    const tar = await diffTar(lo, up, { xattrs: 'all' });
    const copy = path.join(sb.dir, 'rt-copy');
    execFileSync('cp', ['-a', lo, copy]);
    await applyLayer(streamOf(tar, 777), copy, { mode: 'direct' });
    assert.deepEqual(await snapshotTree(copy), await snapshotTree(up));
  });

  it('uses PAX for long names, long link targets and large ids', async () => {
    const up = path.join(sb.dir, 'pax-upper');
    const longDir = Array.from({ length: 12 }, (_, i) => `segment-${i}-${'x'.repeat(15)}`).join('/');
    await write(up, `${longDir}/file-with-a-long-name-${'y'.repeat(60)}`, 'deep');
    await fsp.symlink('t'.repeat(150), path.join(up, 'longlink'));
    await write(up, 'bigid', 'b');
    await fsp.chown(path.join(up, 'bigid'), 3_000_000, 4_000_000);
    const tar = await diffTar(null, up);
    const entries = await listTar(tar);
    const long = entries.find((e) => e.path.endsWith('y'.repeat(60)))!;
    assert.ok(Buffer.byteLength(long.path) > 255);
    assert.equal(long.pax.path?.toString(), long.path);
    assert.equal(entries.find((e) => e.path === 'longlink')!.linkpath, 't'.repeat(150));
    const big = entries.find((e) => e.path === 'bigid')!;
    assert.deepEqual([big.uid, big.gid], [3_000_000, 4_000_000]);
    const copy = path.join(sb.dir, 'pax-copy');
    await fsp.mkdir(copy);
    await applyLayer(streamOf(tar), copy, { mode: 'overlay' });
    assert.deepEqual(await snapshotTree(copy), await snapshotTree(up));
  });

  it('propagates output errors', async () => {
    const up = path.join(sb.dir, 'err-upper');
    await write(up, 'f', Buffer.alloc(2_000_000, 1));
    const out = new PassThrough({ highWaterMark: 1024 });
    out.on('data', () => out.destroy(new Error('consumer went away')));
    await assert.rejects(writeDiff(null, up, out), /consumer went away|closed/);
  });
});
