// The walking differ's Apply without a daemon: a file-backed fake content store (streams opened
// with start/end offsets, as the local store does), bind and overlay mounts applied directly,
// every layer media type, the diff id / size it reports, and containment at the Apply level.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { NotFoundError } from '../../../../../core/errdefs/errdefs.js';
import type { ContentStore } from '../../../../../core/content/content.js';
import * as fsx from '../../../../../core/sys/fsx.js';
import { WalkingDiffer, directTarget, overlayDirs, uniqueRef } from '../../../../../plugins/differ/walking/differ.js';
import { WORKER_MIN_LAYER_BYTES } from '../../../../../plugins/differ/walking/archive/gunzip-worker.js';
import { buildLayer, compress, layerMediaType, sha256, type TarSpec } from '../../../client/images/fixtures.js';
import { buildTar } from './archive/helpers.js';

const ctx = { namespace: 'test' };

/** Only what Apply uses: read() of blobs kept as files. */
class FileContent {
  constructor(readonly dir: string) {}
  async put(data: Buffer): Promise<string> {
    const d = sha256(data);
    await fsp.writeFile(path.join(this.dir, d.slice(7)), data);
    return d;
  }
  async read(_ctx: unknown, digest: string, offset = 0): Promise<Readable> {
    const p = path.join(this.dir, digest.slice(7));
    const st = await fsp.stat(p).catch(() => undefined);
    if (!st) throw new NotFoundError(`content digest ${digest}`);
    if (st.size === 0) return createReadStream(p);
    return createReadStream(p, { start: offset, end: st.size - 1, highWaterMark: 1 << 20 });
  }
}

let work: string;
let content: FileContent;
let differ: WalkingDiffer;

before(async () => {
  work = await fsp.mkdtemp(path.join(os.tmpdir(), 'berth-differ-'));
  await fsp.mkdir(path.join(work, 'blobs'));
  content = new FileContent(path.join(work, 'blobs'));
  differ = new WalkingDiffer(content as unknown as ContentStore, { allowDevices: false });
});

after(async () => {
  await fsp.rm(work, { recursive: true, force: true });
});

async function freshDir(name: string): Promise<string> {
  const d = path.join(work, `${name}-${Math.random().toString(36).slice(2)}`);
  await fsp.mkdir(d, { recursive: true });
  return d;
}

async function applyBlob(blob: Buffer, mediaType: string, root: string) {
  const digest = await content.put(blob);
  return differ.apply(ctx, { mediaType, digest, size: blob.length }, [{ type: 'bind', source: root, options: ['rw', 'rbind'] }]);
}

const simple: TarSpec[] = [
  { path: 'etc/', type: 'Directory' },
  { path: 'etc/hostname', data: 'box\n' },
  { path: 'bin/', type: 'Directory' },
  { path: 'bin/tool', data: '#!/bin/sh\n', mode: 0o755 },
  { path: 'bin/alias', type: 'SymbolicLink', linkpath: 'tool' },
];

describe('helpers', () => {
  it('parses overlay options and picks direct targets', () => {
    assert.deepEqual(overlayDirs(['index=off', 'workdir=/w', 'upperdir=/u', 'lowerdir=/l1:/l2']), { upper: '/u', lowers: ['/l1', '/l2'] });
    assert.deepEqual(directTarget([{ type: 'overlay', source: 'overlay', options: ['workdir=/w', 'upperdir=/u', 'lowerdir=/l1'] }], false),
      { root: '/u', mode: 'overlay', parents: ['/l1'] });
    assert.deepEqual(directTarget([{ type: 'bind', source: '/s', options: ['rw', 'rbind'] }], false), { root: '/s', mode: 'direct', parents: [] });
    assert.equal(directTarget([{ type: 'bind', source: '/s', options: ['ro', 'rbind'] }], false), undefined);
    assert.equal(directTarget([{ type: 'overlay', source: 'overlay', options: ['lowerdir=/a:/b'] }], false), undefined, 'read-only overlay');
    assert.equal(directTarget([{ type: 'overlay', source: 'overlay', options: ['upperdir=/u', 'lowerdir=/l', 'userxattr'] }], false), undefined);
    assert.equal(directTarget([{ type: 'overlay', source: 'overlay', options: ['upperdir=/u', 'lowerdir=/l'] }], true), undefined, 'user namespace');
    assert.equal(directTarget([{ type: 'btrfs', source: '/dev/x', options: ['subvolid=5'] }], false), undefined);
    assert.equal(directTarget([], false), undefined);
    assert.match(uniqueRef(), /^\d+-[A-Za-z0-9_-]{4}$/);
  });
});

describe('Apply', () => {
  for (const [name, c, docker] of [
    ['oci tar+gzip', 'gzip', false],
    ['oci tar+zstd', 'zstd', false],
    ['oci tar', 'none', false],
    ['docker tar.gzip', 'gzip', true],
    ['docker tar', 'none', true],
  ] as const) {
    it(`applies ${name} and reports the diff id and uncompressed size`, async () => {
      const layer = buildLayer(simple, c, docker);
      const root = await freshDir('apply');
      const res = await applyBlob(layer.blob, layer.desc.mediaType, root);
      assert.deepEqual(res, { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layer.diffID, size: layer.raw.length });
      assert.equal(await fsp.readFile(path.join(root, 'etc/hostname'), 'utf8'), 'box\n');
      assert.equal((await fsp.stat(path.join(root, 'bin/tool'))).mode & 0o777, 0o755);
      assert.equal(await fsp.readlink(path.join(root, 'bin/alias')), 'tool');
    });
  }

  it('decompresses a gzip blob labelled as Docker plain tar (the bytes decide)', async () => {
    const raw = buildTar(simple);
    const blob = compress(raw, 'gzip');
    const root = await freshDir('mislabelled');
    const res = await applyBlob(blob, 'application/vnd.docker.image.rootfs.diff.tar', root);
    assert.equal(res.digest, sha256(raw));
    assert.equal(await fsp.readFile(path.join(root, 'etc/hostname'), 'utf8'), 'box\n');
  });

  it('applies a big gzip layer (inflated on the worker thread) with the same result and diff id', async () => {
    const big = randomBytes(6 * 1024 * 1024);
    const raw = buildTar([...simple, { path: 'data/', type: 'Directory', mode: 0o755 }, { path: 'data/blob', data: big, mode: 0o600 }]);
    const blob = compress(raw, 'gzip');
    assert.ok(blob.length >= WORKER_MIN_LAYER_BYTES);
    const root = await freshDir('big');
    const res = await applyBlob(blob, layerMediaType('gzip'), root);
    assert.equal(res.digest, sha256(raw));
    assert.equal(res.size, raw.length);
    assert.ok((await fsp.readFile(path.join(root, 'data/blob'))).equals(big));
    assert.equal(await fsp.readFile(path.join(root, 'etc/hostname'), 'utf8'), 'box\n');
    // Truncated: the worker's zlib error fails the Apply.
    await assert.rejects(applyBlob(blob.subarray(0, blob.length - 64), layerMediaType('gzip'), await freshDir('big-cut')), /unexpected end of file/);
  });

  it('applies tiny and empty layers (a blob smaller than the sniffing window)', async () => {
    const empty = Buffer.alloc(1024);
    const root = await freshDir('empty');
    const res = await applyBlob(compress(empty, 'gzip'), layerMediaType('gzip'), root);
    assert.equal(res.digest, sha256(empty));
    assert.equal(res.size, 1024);
    const res2 = await applyBlob(Buffer.alloc(0), 'application/vnd.docker.image.rootfs.diff.tar', root);
    assert.equal(res2.size, 0);
    assert.equal(res2.digest, sha256(Buffer.alloc(0)));
  });

  it('counts bytes after the end-of-archive marker in the diff id, as containerd does', async () => {
    const raw = Buffer.concat([buildTar(simple), Buffer.alloc(4096)]);
    const root = await freshDir('trailing');
    const res = await applyBlob(compress(raw, 'gzip'), layerMediaType('gzip'), root);
    assert.equal(res.size, raw.length);
    assert.equal(res.digest, sha256(raw));
  });

  it('refuses media types it cannot process', async () => {
    const root = await freshDir('bad');
    const digest = await content.put(Buffer.from('x'));
    for (const mt of ['application/vnd.oci.image.layer.v1.tar+gzip+encrypted', 'application/json', 'application/vnd.oci.image.layer.v1.tar+bzip2']) {
      await assert.rejects(differ.apply(ctx, { mediaType: mt, digest, size: 1 }, [{ type: 'bind', source: root, options: ['rw'] }]), /no processor for media-type/);
    }
  });

  it('fails on a missing blob and on corrupt compressed data', async () => {
    const root = await freshDir('missing');
    await assert.rejects(differ.apply(ctx, { mediaType: layerMediaType('gzip'), digest: sha256('nope'), size: 4 }, [{ type: 'bind', source: root, options: ['rw'] }]), /not found/);
    const good = compress(buildTar(simple), 'gzip');
    const truncated = good.subarray(0, good.length - 20);
    await assert.rejects(applyBlob(truncated, layerMediaType('gzip'), root));
  });

  it('fails, never hangs, on a gzip layer cut short at any byte', async () => {
    // The decompressor can fail while Apply still checks its target; the tar reader that starts
    // afterwards must see that failure instead of waiting for events that already happened.
    const good = compress(buildTar(simple), 'gzip');
    const hung: number[] = [];
    // From the end of the 10-byte gzip header (shorter, the bytes are not recognised as gzip).
    for (let cut = 10; cut < good.length; cut++) {
      const root = await freshDir(`cut${cut}`);
      let timer: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([
        applyBlob(good.subarray(0, cut), layerMediaType('gzip'), root).then(() => 'applied', () => 'failed'),
        new Promise<string>((res) => { timer = setTimeout(() => res('hung'), 5000); }),
      ]);
      clearTimeout(timer);
      if (outcome === 'hung') hung.push(cut);
      else assert.equal(outcome, 'failed', `cut at ${cut} of ${good.length} bytes`);
    }
    assert.deepEqual(hung, [], `Apply hung on the layer cut at these byte counts (of ${good.length})`);
  });

  it('applies onto an overlay upperdir directly: whiteout devices, opaque xattr, lowers untouched', async () => {
    const lower = await freshDir('lower');
    const base = buildLayer([
      { path: 'data/', type: 'Directory' },
      { path: 'data/gone.txt', data: 'gone' },
      { path: 'data/kept.txt', data: 'kept' },
      { path: 'data/dir/', type: 'Directory' },
      { path: 'data/dir/old.txt', data: 'old' },
    ]);
    await applyBlob(base.blob, base.desc.mediaType, lower);
    const upper = await freshDir('upper');
    const layer = buildLayer([
      { path: 'data/', type: 'Directory' },
      { path: 'data/.wh.gone.txt' },
      { path: 'data/dir/', type: 'Directory' },
      { path: 'data/dir/.wh..wh..opq' },
      { path: 'data/dir/new.txt', data: 'new' },
    ]);
    const digest = await content.put(layer.blob);
    const res = await differ.apply(ctx, { mediaType: layer.desc.mediaType, digest, size: layer.blob.length }, [{
      type: 'overlay', source: 'overlay', options: [`workdir=${path.join(work, 'nowork')}`, `upperdir=${upper}`, `lowerdir=${lower}`],
    }]);
    assert.equal(res.digest, layer.diffID);
    const wh = await fsp.lstat(path.join(upper, 'data/gone.txt'));
    assert.ok(wh.isCharacterDevice(), 'whiteout is a character device');
    assert.equal(wh.rdev, 0);
    assert.equal(fsx.lgetxattr(path.join(upper, 'data/dir'), 'trusted.overlay.opaque')?.toString(), 'y');
    assert.equal(await fsp.readFile(path.join(upper, 'data/dir/new.txt'), 'utf8'), 'new');
    assert.equal(await fsp.readFile(path.join(lower, 'data/gone.txt'), 'utf8'), 'gone', 'lower untouched');
    assert.equal(await fsp.readFile(path.join(lower, 'data/dir/old.txt'), 'utf8'), 'old');
  });

  it('applies whiteouts and opaque directories by deletion in direct mode', async () => {
    const root = await freshDir('direct');
    const base = buildLayer([
      { path: 'data/', type: 'Directory' },
      { path: 'data/gone.txt', data: 'gone' },
      { path: 'data/kept.txt', data: 'kept' },
      { path: 'data/dir/', type: 'Directory' },
      { path: 'data/dir/old.txt', data: 'old' },
    ]);
    await applyBlob(base.blob, base.desc.mediaType, root);
    const layer = buildLayer([
      { path: 'data/.wh.gone.txt' },
      { path: 'data/dir/', type: 'Directory' },
      { path: 'data/dir/.wh..wh..opq' },
      { path: 'data/dir/new.txt', data: 'new' },
    ]);
    await applyBlob(layer.blob, layer.desc.mediaType, root);
    assert.deepEqual((await fsp.readdir(path.join(root, 'data'))).sort(), ['dir', 'kept.txt']);
    assert.deepEqual(await fsp.readdir(path.join(root, 'data/dir')), ['new.txt']);
  });
});

describe('Apply containment (crafted layers)', () => {
  /** A target inside a sandbox whose other entries must stay exactly as they were. */
  async function sandbox() {
    const box = await freshDir('box');
    const root = path.join(box, 'root');
    await fsp.mkdir(root);
    await fsp.writeFile(path.join(box, 'secret'), 'untouched');
    const before = async () => (await fsp.readdir(box)).sort();
    return { box, root, listing: await before(), check: async () => {
      assert.deepEqual((await fsp.readdir(box)).sort(), ['root', 'secret'], 'nothing created next to the root');
      assert.equal(await fsp.readFile(path.join(box, 'secret'), 'utf8'), 'untouched');
    } };
  }

  async function applySpecs(root: string, specs: TarSpec[]) {
    const raw = buildTar(specs);
    return applyBlob(compress(raw, 'gzip'), layerMediaType('gzip'), root);
  }

  it('keeps ".." entries inside the root', async () => {
    const s = await sandbox();
    await applySpecs(s.root, [{ path: '../../escaped.txt', data: 'x' }, { path: 'a/../../../secret', data: 'overwritten?' }]);
    await s.check();
    assert.equal(await fsp.readFile(path.join(s.root, 'escaped.txt'), 'utf8'), 'x');
    assert.equal(await fsp.readFile(path.join(s.root, 'secret'), 'utf8'), 'overwritten?');
  });

  it('treats absolute names as relative to the root', async () => {
    const s = await sandbox();
    await applySpecs(s.root, [{ path: `${s.box}/secret`, data: 'abs' }, { path: '/etc/abs.txt', data: 'abs' }]);
    await s.check();
    assert.equal(await fsp.readFile(path.join(s.root, s.box, 'secret'), 'utf8'), 'abs');
    assert.equal(await fsp.readFile(path.join(s.root, 'etc/abs.txt'), 'utf8'), 'abs');
  });

  it('does not follow symlinks out of the root', async () => {
    const s = await sandbox();
    await applySpecs(s.root, [
      { path: 'link', type: 'SymbolicLink', linkpath: s.box },
      { path: 'link/secret', data: 'through-link' },
      { path: 'rel', type: 'SymbolicLink', linkpath: '../..' },
      { path: 'rel/secret', data: 'through-rel' },
    ]);
    await s.check();
  });

  it('refuses or contains hardlinks that point outside', async () => {
    const s = await sandbox();
    let failed = false;
    try {
      await applySpecs(s.root, [{ path: 'hl', type: 'Link', linkpath: '../secret' }]);
    } catch (err) {
      failed = true;
      assert.match(String(err), /outside|not found|no such/i);
    }
    await s.check();
    if (!failed) {
      const st = await fsp.lstat(path.join(s.root, 'hl'));
      assert.notEqual(st.ino, (await fsp.stat(path.join(s.box, 'secret'))).ino, 'not a link to the outside file');
    }
    const s2 = await sandbox();
    await assert.rejects(applySpecs(s2.root, [
      { path: 'esc', type: 'SymbolicLink', linkpath: s2.box },
      { path: 'hl2', type: 'Link', linkpath: 'esc/secret' },
    ]));
    await s2.check();
  });

  it('skips device nodes when devices are not allowed, creates fifos', async () => {
    const s = await sandbox();
    await applySpecs(s.root, [
      { path: 'dev/', type: 'Directory' },
      { path: 'dev/sda', type: 'BlockDevice', devmaj: 8, devmin: 0 },
      { path: 'dev/null', type: 'CharacterDevice', devmaj: 1, devmin: 3 },
      { path: 'dev/fifo', type: 'FIFO' },
    ]);
    await s.check();
    assert.deepEqual(await fsp.readdir(path.join(s.root, 'dev')), ['fifo']);
  });

  it('creates device nodes when allowed (root outside a user namespace)', async () => {
    const allowing = new WalkingDiffer(content as unknown as ContentStore, { allowDevices: true });
    const root = await freshDir('devs');
    const raw = buildTar([{ path: 'null', type: 'CharacterDevice', devmaj: 1, devmin: 3, mode: 0o666 }]);
    const blob = compress(raw, 'gzip');
    const digest = await content.put(blob);
    await allowing.apply(ctx, { mediaType: layerMediaType('gzip'), digest, size: blob.length }, [{ type: 'bind', source: root, options: ['rw'] }]);
    const st = await fsp.lstat(path.join(root, 'null'));
    assert.ok(st.isCharacterDevice());
    assert.equal(fsx.major(st.rdev), 1);
    assert.equal(fsx.minor(st.rdev), 3);
  });
});
