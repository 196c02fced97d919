// applyLayer: entry types, metadata, replacement rules, whiteouts in both modes, and errors.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { applyLayer } from '../../../../../../plugins/differ/walking/archive/apply.js';
import * as fsx from '../../../../../../core/sys/fsx.js';
import { isInvalidArgument } from '../../../../../../core/errdefs/errdefs.js';
import { xattrSupport } from '../../../../../../plugins/differ/walking/archive/tarstream.js';
import { buildTar, headerBlock, streamOf, makeSandbox, snapshotTree, isRoot, type Sandbox } from './helpers.js';

const T1 = new Date('2021-03-04T05:06:07Z');
const T2 = new Date('2019-01-02T03:04:05Z');

describe('applyLayer: entry types and metadata', { skip: !isRoot && 'needs root' }, () => {
  let sb: Sandbox;
  before(async () => {
    sb = await makeSandbox();
  });
  after(async () => {
    await sb.cleanup();
  });

  it('creates files, dirs, symlinks, hardlinks, devices, fifos with their metadata', async () => {
    const cap = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x80, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const tar = buildTar([
      { path: 'etc/', type: 'Directory', mode: 0o755, mtime: T2 },
      { path: 'etc/hosts', data: '127.0.0.1 localhost\n', mode: 0o644, uid: 1000, gid: 1001, mtime: T1 },
      { path: 'usr/bin/ping', data: 'ELF', mode: 0o4755, mtime: T1, pax: { 'SCHILY.xattr.security.capability': cap, 'SCHILY.xattr.user.note': Buffer.from([0xff, 0x00, 0x0a, 0x3d]) } },
      { path: 'tmp/', type: 'Directory', mode: 0o1777, mtime: T1 },
      { path: 'srv/', type: 'Directory', mode: 0o2750, uid: 5, gid: 6, mtime: T2 },
      { path: 'lib', type: 'SymbolicLink', linkpath: 'usr/lib', uid: 7, gid: 8, mtime: T2 },
      { path: 'etc/hosts.bak', type: 'Link', linkpath: 'etc/hosts', mode: 0o644, uid: 1000, gid: 1001, mtime: T1 },
      { path: 'dev/null', type: 'CharacterDevice', devmaj: 1, devmin: 3, mode: 0o666, mtime: T1 },
      { path: 'dev/loop9', type: 'BlockDevice', devmaj: 7, devmin: 9, mode: 0o660, gid: 6, mtime: T1 },
      { path: 'run/fifo', type: 'FIFO', mode: 0o620, mtime: T1 },
      { path: './a/very/' + 'long/'.repeat(30) + 'name.txt', data: 'deep', mtime: T1 },
      { path: 'etc/big', data: Buffer.alloc(3 * 1024 * 1024 + 17, 0x61), mtime: T1 },
    ]);
    const res = await applyLayer(streamOf(tar, 1000), sb.root, { mode: 'direct' });
    assert.equal(res.entries, 12);
    assert.equal(res.bytes, 20 + 3 + 4 + 3 * 1024 * 1024 + 17);

    const snap = await snapshotTree(sb.root, { dirMtimes: true, nlink: true });
    const r = (p: string) => path.join(sb.root, p);
    assert.equal(await fsp.readFile(r('etc/hosts'), 'utf8'), '127.0.0.1 localhost\n');
    assert.deepEqual(
      { mode: snap['etc/hosts']!.mode, uid: snap['etc/hosts']!.uid, gid: snap['etc/hosts']!.gid, mtime: snap['etc/hosts']!.mtimeSec, nlink: snap['etc/hosts']!.nlink },
      { mode: 0o644, uid: 1000, gid: 1001, mtime: T1.getTime() / 1000, nlink: 2 },
    );
    assert.equal((await fsp.stat(r('etc/hosts'))).ino, (await fsp.stat(r('etc/hosts.bak'))).ino);
    assert.equal(snap['usr/bin/ping']!.mode, 0o4755, 'setuid survives chown');
    assert.deepEqual(fsx.lgetxattr(r('usr/bin/ping'), 'security.capability'), cap, 'binary capability intact');
    assert.deepEqual(fsx.lgetxattr(r('usr/bin/ping'), 'user.note'), Buffer.from([0xff, 0x00, 0x0a, 0x3d]));
    assert.equal(snap['tmp']!.mode, 0o1777);
    assert.deepEqual([snap['srv']!.mode, snap['srv']!.uid, snap['srv']!.gid], [0o2750, 5, 6]);
    assert.equal(snap['srv']!.mtimeSec, T2.getTime() / 1000);
    assert.equal(snap['etc']!.mtimeSec, T2.getTime() / 1000, 'dir mtime set after its children were written');
    assert.deepEqual([snap['lib']!.type, snap['lib']!.link, snap['lib']!.uid, snap['lib']!.gid], ['symlink', 'usr/lib', 7, 8]);
    assert.equal(snap['lib']!.mtimeSec, T2.getTime() / 1000, 'lutimes on symlink');
    assert.equal(snap['dev/null']!.type, 'char');
    assert.deepEqual([fsx.major(snap['dev/null']!.rdev!), fsx.minor(snap['dev/null']!.rdev!), snap['dev/null']!.mode], [1, 3, 0o666]);
    assert.equal(snap['dev/loop9']!.type, 'block');
    assert.deepEqual([fsx.major(snap['dev/loop9']!.rdev!), fsx.minor(snap['dev/loop9']!.rdev!), snap['dev/loop9']!.gid], [7, 9, 6]);
    assert.deepEqual([snap['run/fifo']!.type, snap['run/fifo']!.mode], ['fifo', 0o620]);
    assert.equal(snap['usr']!.mode, 0o755, 'implicit parent is 0755');
    assert.equal(await fsp.readFile(r('a/very/' + 'long/'.repeat(30) + 'name.txt'), 'utf8'), 'deep');
    assert.equal((await fsp.stat(r('etc/big'))).size, 3 * 1024 * 1024 + 17);
  });

  it('captures PAX xattrs with the installed node-tar', () => {
    assert.ok(xattrSupport, 'node-tar internals changed: SCHILY.xattr records would be dropped');
  });

  it('sets atime to the later of atime and mtime, merges several PAX headers', async () => {
    const root = path.join(sb.dir, 'atime');
    await fsp.mkdir(root);
    const later = new Date('2024-01-01T00:00:00Z');
    const hdr = (name: string, body: Buffer) => {
      const b = Buffer.concat([body, Buffer.alloc((512 - (body.length % 512)) % 512)]);
      return Buffer.concat([headerBlock({ path: name, type: 'ExtendedHeader' as never }, body.length), b]);
    };
    const rec = (k: string, v: string) => {
      const core = ` ${k}=${v}\n`;
      let n = core.length + 2;
      while (String(n).length + core.length !== n) n = String(n).length + core.length;
      return Buffer.from(`${n}${core}`);
    };
    const tar = Buffer.concat([
      buildTar([{ path: 'a', data: 'x', mtime: T1, pax: { atime: String(later.getTime() / 1000) } }], { eof: false }),
      buildTar([{ path: 'b', data: 'y', mtime: T1, pax: { atime: String(T2.getTime() / 1000) } }], { eof: false }),
      hdr('PaxHeader/c', rec('SCHILY.xattr.user.one', '1')),
      hdr('PaxHeader/c', rec('SCHILY.xattr.user.two', '2')),
      buildTar([{ path: 'c', data: 'z' }]),
    ]);
    await applyLayer(streamOf(tar, 100), root, { mode: 'direct' });
    assert.equal((await fsp.stat(path.join(root, 'a'))).atimeMs, later.getTime());
    assert.equal((await fsp.stat(path.join(root, 'b'))).atimeMs, T1.getTime());
    assert.deepEqual(
      [fsx.lgetxattr(path.join(root, 'c'), 'user.one')?.toString(), fsx.lgetxattr(path.join(root, 'c'), 'user.two')?.toString()],
      ['1', '2'],
    );
    // A PAX body that is not a list of records is an error, not silently ignored.
    const bad = Buffer.concat([hdr('PaxHeader/d', Buffer.from('garbage without records\n')), buildTar([{ path: 'd', data: 'w' }])]);
    await assert.rejects(applyLayer(streamOf(bad), root, { mode: 'direct' }), (e) => isInvalidArgument(e));
  });

  it('handles many small and several large files under the background limits', async () => {
    const root = path.join(sb.dir, 'many');
    await fsp.mkdir(root);
    const specs = [];
    for (let i = 0; i < 2000; i++) specs.push({ path: `d${i % 17}/f${i}`, data: `content ${i}`.repeat(1 + (i % 50)), mode: 0o600 + (i % 8) });
    for (let i = 0; i < 30; i++) specs.push({ path: `big/b${i}`, data: Buffer.alloc(1_500_000 + i, i) });
    const res = await applyLayer(streamOf(buildTar(specs), 200_000), root, { mode: 'overlay' });
    assert.equal(res.entries, 2030);
    for (let i = 0; i < 2000; i += 97) {
      const p = path.join(root, `d${i % 17}/f${i}`);
      assert.equal(await fsp.readFile(p, 'utf8'), `content ${i}`.repeat(1 + (i % 50)));
      assert.equal((await fsp.stat(p)).mode & 0o777, 0o600 + (i % 8));
    }
    for (let i = 0; i < 30; i++) assert.deepEqual(await fsp.readFile(path.join(root, `big/b${i}`)), Buffer.alloc(1_500_000 + i, i));
  });

  it('skips device nodes when allowDevices is false, still creates fifos', async () => {
    const root = path.join(sb.dir, 'nodev');
    await fsp.mkdir(root);
    const warnings: string[] = [];
    await applyLayer(
      streamOf(buildTar([
        { path: 'dev/null', type: 'CharacterDevice', devmaj: 1, devmin: 3 },
        { path: 'dev/fifo', type: 'FIFO' },
      ])),
      root,
      { mode: 'direct', allowDevices: false, onWarning: (m) => warnings.push(m) },
    );
    await assert.rejects(fsp.lstat(path.join(root, 'dev/null')), { code: 'ENOENT' });
    assert.ok((await fsp.lstat(path.join(root, 'dev/fifo'))).isFIFO());
    assert.equal(warnings.length, 1);
  });

  it('ignores trusted.* xattrs from the archive', async () => {
    const root = path.join(sb.dir, 'trusted');
    await fsp.mkdir(root);
    await applyLayer(streamOf(buildTar([{ path: 'd/', type: 'Directory', pax: { 'SCHILY.xattr.trusted.overlay.opaque': 'y' } }])), root, { mode: 'overlay' });
    assert.equal(fsx.lgetxattr(path.join(root, 'd'), 'trusted.overlay.opaque'), undefined);
  });

  it('applies an empty layer (no bytes, or only end-of-archive blocks)', async () => {
    const root = path.join(sb.dir, 'empty');
    await fsp.mkdir(root);
    assert.deepEqual(await applyLayer(streamOf(Buffer.alloc(0)), root, { mode: 'direct' }), { entries: 0, bytes: 0 });
    assert.deepEqual(await applyLayer(streamOf(Buffer.alloc(1024)), root, { mode: 'overlay' }), { entries: 0, bytes: 0 });
    assert.deepEqual(await fsp.readdir(root), []);
  });

  it('rejects garbage and truncated archives', async () => {
    const root = path.join(sb.dir, 'garbage');
    await fsp.mkdir(root);
    await assert.rejects(applyLayer(streamOf(Buffer.alloc(4096, 0x41)), root, { mode: 'direct' }), (e) => isInvalidArgument(e));
    const good = buildTar([{ path: 'f', data: Buffer.alloc(5000, 1) }], { eof: false });
    await assert.rejects(applyLayer(streamOf(good.subarray(0, 2048)), root, { mode: 'direct' }), (e) => isInvalidArgument(e));
  });

  it('propagates source stream errors and aborts', async () => {
    const root = path.join(sb.dir, 'srcerr');
    await fsp.mkdir(root);
    const tar = buildTar([{ path: 'f', data: Buffer.alloc(200_000, 1) }]);
    let n = 0;
    const s = new Readable({
      read() {
        if (++n === 5) this.destroy(new Error('network went away'));
        else this.push(tar.subarray((n - 1) * 1024, n * 1024));
      },
    });
    await assert.rejects(applyLayer(s, root, { mode: 'direct' }), /network went away/);
    const ac = new AbortController();
    ac.abort(new Error('cancelled by test'));
    await assert.rejects(applyLayer(streamOf(buildTar([{ path: 'g', data: 'x' }])), root, { mode: 'direct', signal: ac.signal }), /cancelled by test/);
  });

  it('rejects an unknown mode and a missing root', async () => {
    await assert.rejects(applyLayer(streamOf(Buffer.alloc(0)), sb.root, { mode: 'bogus' as 'direct' }), (e) => isInvalidArgument(e));
    await assert.rejects(applyLayer(streamOf(Buffer.alloc(0)), path.join(sb.dir, 'nope'), { mode: 'direct' }), /not found/);
  });
});

describe('applyLayer: replacing existing paths', { skip: !isRoot && 'needs root' }, () => {
  let sb: Sandbox;
  before(async () => {
    sb = await makeSandbox();
  });
  after(async () => {
    await sb.cleanup();
  });

  it('merges dir over dir, replaces everything else', async () => {
    const r = (p: string) => path.join(sb.root, p);
    await fsp.mkdir(r('keep/sub'), { recursive: true });
    await fsp.writeFile(r('keep/old'), 'old');
    await fsp.mkdir(r('dir2file/x'), { recursive: true });
    await fsp.writeFile(r('file2dir'), 'f');
    await fsp.symlink('/etc', r('link2dir'));
    await fsp.writeFile(r('overwrite'), 'previous content that is longer');
    await fsp.link(r('overwrite'), r('overwrite.link'));

    await applyLayer(
      streamOf(buildTar([
        { path: 'keep/', type: 'Directory', mode: 0o700, uid: 3 },
        { path: 'keep/new', data: 'new' },
        { path: 'dir2file', data: 'now a file' },
        { path: 'file2dir/', type: 'Directory' },
        { path: 'file2dir/inner', data: 'i' },
        { path: 'link2dir/', type: 'Directory' },
        { path: 'overwrite', data: 'short' },
      ])),
      sb.root,
      { mode: 'direct' },
    );
    const keep = await fsp.stat(r('keep'));
    assert.equal(keep.mode & 0o7777, 0o700);
    assert.equal(keep.uid, 3);
    assert.deepEqual((await fsp.readdir(r('keep'))).sort(), ['new', 'old', 'sub']);
    assert.equal(await fsp.readFile(r('dir2file'), 'utf8'), 'now a file');
    assert.equal(await fsp.readFile(r('file2dir/inner'), 'utf8'), 'i');
    assert.ok((await fsp.lstat(r('link2dir'))).isDirectory());
    assert.equal(await fsp.readFile(r('overwrite'), 'utf8'), 'short');
    assert.equal(await fsp.readFile(r('overwrite.link'), 'utf8'), 'previous content that is longer', 'old inode untouched');
  });

  it('later entries for the same path win', async () => {
    const root = path.join(sb.dir, 'twice');
    await fsp.mkdir(root);
    await applyLayer(
      streamOf(buildTar([
        { path: 'f', data: 'one' },
        { path: 'f', data: 'two', mode: 0o600 },
        { path: 's', type: 'SymbolicLink', linkpath: 'a' },
        { path: 's', type: 'SymbolicLink', linkpath: 'b' },
        ...Array.from({ length: 20 }, (_, i) => ({ path: 'd/', type: 'Directory' as const, mode: 0o700 + i, uid: i, mtime: new Date(1_000_000_000_000 + i * 1000) })),
      ])),
      root,
      { mode: 'overlay' },
    );
    assert.equal(await fsp.readFile(path.join(root, 'f'), 'utf8'), 'two');
    assert.equal((await fsp.stat(path.join(root, 'f'))).mode & 0o777, 0o600);
    assert.equal(await fsp.readlink(path.join(root, 's')), 'b');
    const d = await fsp.stat(path.join(root, 'd'));
    assert.deepEqual([d.mode & 0o7777, d.uid, d.mtimeMs], [0o700 + 19, 19, 1_000_000_000_000 + 19_000]);
  });
});

describe('applyLayer: whiteouts', { skip: !isRoot && 'needs root' }, () => {
  let sb: Sandbox;
  before(async () => {
    sb = await makeSandbox();
  });
  after(async () => {
    await sb.cleanup();
  });

  async function lowerTree(root: string) {
    const r = (p: string) => path.join(root, p);
    await fsp.mkdir(r('etc/conf.d'), { recursive: true });
    await fsp.writeFile(r('etc/a'), 'a');
    await fsp.writeFile(r('etc/b'), 'b');
    await fsp.writeFile(r('etc/conf.d/x'), 'x');
    await fsp.mkdir(r('opq/sub'), { recursive: true });
    await fsp.writeFile(r('opq/lower1'), '1');
    await fsp.writeFile(r('opq/sub/lower2'), '2');
    await fsp.writeFile(r('opq/keepme'), 'lower version');
    await fsp.mkdir(r('var/cache'), { recursive: true });
    await fsp.writeFile(r('var/cache/c'), 'c');
  }

  const layer = () =>
    buildTar([
      { path: 'etc/', type: 'Directory' },
      { path: 'etc/.wh.a', data: '' },
      { path: 'etc/.wh.conf.d' },
      { path: 'opq/', type: 'Directory', mode: 0o750 },
      { path: 'opq/keepme', data: 'upper version' },
      // Marker after a sibling from the same layer: that sibling must survive.
      { path: 'opq/.wh..wh..opq' },
      { path: 'opq/new', data: 'n' },
      { path: 'var/.wh.cache' },
      { path: 'nothere/.wh.ghost' },
      { path: '.wh..wh.plnk/123' },
    ]);

  it('direct mode deletes whiteouts and clears opaque directories', async () => {
    const root = path.join(sb.dir, 'direct');
    await fsp.mkdir(root);
    await lowerTree(root);
    const res = await applyLayer(streamOf(layer()), root, { mode: 'direct' });
    assert.equal(res.entries, 10);
    const snap = await snapshotTree(root);
    assert.deepEqual(Object.keys(snap).sort(), ['etc', 'etc/b', 'nothere', 'opq', 'opq/keepme', 'opq/new', 'var'].sort());
    assert.equal(await fsp.readFile(path.join(root, 'opq/keepme'), 'utf8'), 'upper version');
    assert.equal(snap['opq']!.mode, 0o750);
  });

  it('overlay mode writes 0/0 char devices and the opaque xattr', async () => {
    const root = path.join(sb.dir, 'overlay');
    await fsp.mkdir(root);
    await applyLayer(streamOf(layer()), root, { mode: 'overlay' });
    const snap = await snapshotTree(root, { trusted: true });
    for (const p of ['etc/a', 'etc/conf.d', 'var/cache', 'nothere/ghost']) {
      assert.equal(snap[p]?.type, 'char', p);
      assert.equal(snap[p]!.rdev, 0, p);
    }
    assert.equal(snap['opq']!.xattrs['trusted.overlay.opaque'], Buffer.from('y').toString('base64'));
    assert.equal(snap['etc']!.xattrs['trusted.overlay.opaque'], undefined);
    assert.ok(!Object.keys(snap).some((p) => p.includes('.wh.')), 'no whiteout entries in the output');
    assert.deepEqual(Object.keys(snap).sort(), ['etc', 'etc/a', 'etc/conf.d', 'nothere', 'nothere/ghost', 'opq', 'opq/keepme', 'opq/new', 'var', 'var/cache'].sort());
  });

  it('rejects whiteouts that name nothing or the directory itself', async () => {
    for (const name of ['d/.wh.', 'd/.wh..', 'd/.wh...']) {
      const root = path.join(sb.dir, 'badwh' + name.length);
      await fsp.mkdir(root, { recursive: true });
      await assert.rejects(applyLayer(streamOf(buildTar([{ path: name }])), root, { mode: 'direct' }), (e) => isInvalidArgument(e), name);
    }
  });

  it('copies parent directory attributes from parentRoots for implicit parents', async () => {
    const lower = path.join(sb.dir, 'plower');
    const upper = path.join(sb.dir, 'pupper');
    await fsp.mkdir(path.join(lower, 'usr/share'), { recursive: true });
    await fsp.chmod(path.join(lower, 'usr'), 0o711);
    await fsp.chown(path.join(lower, 'usr'), 12, 13);
    await fsp.mkdir(upper);
    await applyLayer(streamOf(buildTar([{ path: 'usr/share/doc/readme', data: 'r' }])), upper, { mode: 'overlay', parentRoots: [lower] });
    const st = await fsp.stat(path.join(upper, 'usr'));
    assert.deepEqual([st.mode & 0o7777, st.uid, st.gid], [0o711, 12, 13]);
    assert.equal((await fsp.stat(path.join(upper, 'usr/share/doc'))).mode & 0o7777, 0o755);
  });
});

describe('applyLayer: inline and thread-pool file creation agree', { skip: !isRoot && 'needs root' }, () => {
  let sb: Sandbox;
  before(async () => {
    sb = await makeSandbox();
  });
  after(async () => {
    await sb.cleanup();
  });

  // Owners and modes that take each shortcut and each way around it: root:root files created
  // with their final mode, modes the umask or chown would change, setgid directories (whose
  // gid a new file inherits unless chowned back), symlinks, hardlinks and repeated entries.
  const layer = () => buildTar([
    { path: 'etc/', type: 'Directory', mode: 0o755, mtime: T2 },
    { path: 'etc/plain', data: 'a', mode: 0o644, mtime: T1 },
    { path: 'etc/exec', data: 'b', mode: 0o755, mtime: T1 },
    { path: 'etc/world', data: 'c', mode: 0o666, mtime: T1 },
    { path: 'etc/suid', data: 'd', mode: 0o4755, mtime: T1 },
    { path: 'etc/owned', data: 'e', mode: 0o640, uid: 33, gid: 44, mtime: T1 },
    { path: 'shared/', type: 'Directory', mode: 0o2775, uid: 0, gid: 50, mtime: T2 },
    { path: 'shared/rootfile', data: 'f', mode: 0o644, mtime: T1 },
    { path: 'shared/sub/', type: 'Directory', mode: 0o755, mtime: T2 },
    { path: 'shared/sub/inner', data: 'g', mode: 0o644, mtime: T1 },
    { path: 'shared/link', type: 'SymbolicLink', linkpath: 'rootfile', mtime: T2 },
    { path: 'implicit/parent/file', data: 'h', mode: 0o600, mtime: T1 },
    { path: 'etc/hard', type: 'Link', linkpath: 'etc/plain', mode: 0o644, mtime: T1 },
    { path: 'etc/plain', data: 'again', mode: 0o600, uid: 1, gid: 2, mtime: T2 },
    { path: 'etc/', type: 'Directory', mode: 0o750, uid: 3, gid: 4, mtime: T1 },
  ]);

  it('produces the same tree, owners, modes and times', async () => {
    const trees = [];
    for (const inline of [true, false]) {
      const root = path.join(sb.dir, inline ? 'inline' : 'pool');
      await fsp.mkdir(root);
      await applyLayer(streamOf(layer(), 512), root, { mode: 'overlay', inline });
      const tree = await snapshotTree(root, { dirMtimes: true, nlink: true });
      // Parents the layer does not list are made now: their times are the apply's.
      for (const p of ['implicit', 'implicit/parent']) tree[p]!.mtimeSec = 0;
      trees.push(tree);
    }
    assert.deepEqual(trees[0], trees[1]);
    const t = trees[0]!;
    // A root:root file in a setgid directory is chowned back to gid 0, as containerd does.
    assert.deepEqual([t['shared/rootfile']!.uid, t['shared/rootfile']!.gid], [0, 0]);
    assert.deepEqual([t['shared/sub']!.gid, t['shared/sub/inner']!.gid], [0, 0]);
    assert.deepEqual([t['shared/link']!.uid, t['shared/link']!.gid], [0, 0]);
    assert.equal(t['etc/world']!.mode, 0o666);
    assert.equal(t['etc/suid']!.mode, 0o4755);
    assert.deepEqual([t['etc/owned']!.uid, t['etc/owned']!.gid, t['etc/owned']!.mode], [33, 44, 0o640]);
    assert.deepEqual([t['etc']!.uid, t['etc']!.gid, t['etc']!.mode, t['etc']!.mtimeSec], [3, 4, 0o750, Math.floor(T1.getTime() / 1000)]);
    assert.equal(t['etc/hard']!.nlink, 1, 'the hardlink kept the first inode; the later entry replaced the name');
  });
});
