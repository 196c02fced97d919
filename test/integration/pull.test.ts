// Pulling into berthd from a real registry (Debian's docker-registry on loopback) with berth and
// with the real ctr, and what a pull leaves behind: content with containerd's labels, snapshots
// named by chain id, `ctr images check` complete. Layered images (whiteouts, opaque dirs) are
// inspected through `berth images mount`. A registry that serves corrupt blobs leaves nothing
// committed. berth pull also runs against a real containerd; push goes back to the registry.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { BERTH, berth, ctr, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { startRegistry, startServer, type RunningRegistry } from './client/remotes/helpers.js';
import { Connection } from '../../client/connection.js';
import { ContentClient } from '../../client/images/content.js';
import { ImagesDefinition } from '../../api/gen/services/images/v1/images.js';
import { SnapshotsDefinition } from '../../api/gen/services/snapshots/v1/snapshots.js';
import { pull } from '../../client/pull/pull.js';
import { startContainerd, type Containerd } from '../unit/client/pull/containerd.js';
import { baseLayer, buildImage, layeredSpecs, pushFixture, sha256, type BuiltImage } from '../unit/client/images/fixtures.js';

let d: TestDaemon;
let reg: RunningRegistry;
let simple: BuiltImage;
let layered: BuiltImage;
let simpleRef: string;
let layeredRef: string;

before(async () => {
  [d, reg] = await Promise.all([startDaemon(), startRegistry()]);
  simple = buildImage([baseLayer()]);
  layered = buildImage(layeredSpecs());
  simpleRef = await pushFixture(reg.host, 'test/simple', 'v1', simple);
  layeredRef = await pushFixture(reg.host, 'test/layered', 'latest', layered, { manifestOnly: true });
});

after(async () => {
  await Promise.allSettled([d?.dispose(), reg?.stop()]);
});

const run = async (tool: 'ctr' | 'berth', args: string[], ns: string) => {
  const r = tool === 'ctr' ? await ctr(d.address, args, { namespace: ns }) : await berth(d.address, args, { namespace: ns });
  assert.equal(r.code, 0, `${tool} ${args.join(' ')}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
};

async function snapshotNames(conn: Connection, snapshotter = 'overlayfs'): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const r of conn.service(SnapshotsDefinition).list({ snapshotter })) for (const i of r.info) out.set(i.name, i.parent);
  return out;
}

/** What any containerd client expects after a pull of `img` (single platform, `snapshotter`). */
async function assertPulled(ns: string, ref: string, img: BuiltImage, root: 'index' | 'manifest', snapshotter = 'overlayfs') {
  const conn = d.connect(ns);
  const cs = new ContentClient(conn);
  const image = (await conn.service(ImagesDefinition).get({ name: ref })).image!;
  assert.equal(image.target?.digest, root === 'index' ? img.index.desc.digest : img.manifest.desc.digest);
  const host = reg.host.split(':')[0];
  const source = `containerd.io/distribution.source.${host}`;
  const repo = ref.slice(reg.host.length + 1).split(':')[0];
  const manifest = await cs.info(img.manifest.desc.digest);
  assert.equal(manifest.labels['containerd.io/gc.ref.content.config'], img.config.desc.digest);
  img.layers.forEach((l, i) => assert.equal(manifest.labels[`containerd.io/gc.ref.content.l.${i}`], l.desc.digest));
  assert.equal(manifest.labels[source], repo);
  if (root === 'index') {
    const index = await cs.info(img.index.desc.digest);
    assert.equal(index.labels['containerd.io/gc.ref.content.m.0'], img.manifest.desc.digest);
  }
  const config = await cs.info(img.config.desc.digest);
  assert.equal(config.labels[`containerd.io/gc.ref.snapshot.${snapshotter}`], img.chainIDs.at(-1));
  for (const l of img.layers) {
    const info = await cs.info(l.desc.digest);
    assert.equal(info.labels['containerd.io/uncompressed'], l.diffID);
    assert.equal(info.labels[source], repo);
  }
  const snaps = await snapshotNames(conn, snapshotter);
  img.chainIDs.forEach((c, i) => assert.equal(snaps.get(c), i === 0 ? '' : img.chainIDs[i - 1], `snapshot ${c}`));
  assert.equal([...snaps.keys()].filter((k) => k.startsWith('extract-')).length, 0, 'no extraction snapshots left');
  assert.deepEqual(await cs.listStatuses(), [], 'no ingests left');
  const check = await ctr(d.address, ['images', 'check', '--snapshotter', snapshotter], { namespace: ns });
  assert.equal(check.code, 0, check.stderr);
  assert.match(check.stdout, new RegExp(`^${ref.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s+\\S+\\s+sha256:\\w+\\s+complete \\((\\d+)/\\1\\)\\s+\\S+ \\S+/\\S+ \\S+\\s+true`, 'm'));
}

describe('pull from a registry', () => {
  it('berth pull: progress, summary, labels, snapshots, ctr images check complete', async () => {
    const out = await run('berth', ['images', 'pull', '--plain-http', simpleRef], 'bpull');
    assert.match(out, new RegExp(`^${simpleRef}:\\s+resolved\\s+\\|\\++\\|`, 'm'));
    assert.match(out, /^index-sha256:\w{64}:\s+done\s+\|/m);
    assert.match(out, /^manifest-sha256:\w{64}:\s+done\s+\|/m);
    assert.match(out, /^layer-sha256:\w{64}:\s+done\s+\|/m);
    assert.match(out, /^config-sha256:\w{64}:\s+done\s+\|/m);
    assert.match(out, /^elapsed: \d+\.\d\s*s\s+total:\s+\S+ \S+\s+\(\S+ \S+\/s\)/m);
    assert.match(out, new RegExp(`^unpacking linux/amd64 ${simple.index.desc.digest}\\.\\.\\.$`, 'm'));
    assert.match(out, /^done: [\d.]+(ms|s|µs)\s*$/m);
    assert.doesNotMatch(out, /\x1b\[/, 'no ANSI codes when stdout is not a terminal');
    await assertPulled('bpull', simpleRef, simple, 'index');
    // A second pull finds everything present.
    const again = await run('berth', ['pull', '--plain-http', simpleRef], 'bpull');
    assert.match(again, /^layer-sha256:\w{64}:\s+exists\s+\|/m);
    await assertPulled('bpull', simpleRef, simple, 'index');
  });

  it('ctr images pull against berthd leaves the same state', async () => {
    await run('ctr', ['images', 'pull', '--plain-http', simpleRef], 'cpull');
    await assertPulled('cpull', simpleRef, simple, 'index');
    await run('ctr', ['images', 'pull', '--plain-http', layeredRef], 'cpull');
    await assertPulled('cpull', layeredRef, layered, 'manifest');
  });

  it('content fetch: berth and ctr record the image and its content, and unpack nothing; localhost needs no --plain-http', async () => {
    for (const tool of ['berth', 'ctr'] as const) {
      const ns = `${tool}-fetch`;
      // berth treats a loopback registry as plain HTTP by default, as containerd's hosts config does.
      await run(tool, ['content', 'fetch', ...(tool === 'ctr' ? ['--plain-http'] : []), simpleRef], ns);
      const images = await run('ctr', ['images', 'ls', '-q'], ns);
      assert.equal(images.trim(), simpleRef, tool);
      assert.match(await run('ctr', ['images', 'check'], ns), /complete \(\d+\/\d+\)/, tool);
      assert.equal((await run('ctr', ['snapshots', 'ls'], ns)).trim().split('\n').length, 1, `${tool}: no snapshots`);
    }
  });

  it('applies whiteouts and opaque directories (berth pull, then berth images mount)', async () => {
    const ns = 'layers';
    await run('berth', ['images', 'pull', '--plain-http', layeredRef], ns);
    await assertPulled(ns, layeredRef, layered, 'manifest');
    const target = await fsp.mkdtemp(join(tmpdir(), 'berth-mnt-'));
    try {
      const out = await run('berth', ['images', 'mount', layeredRef, target], ns);
      assert.equal(out, `${layered.chainIDs.at(-1)}\n${target}\n`);
      assert.deepEqual((await fsp.readdir(join(target, 'data'))).sort(), ['dir', 'kept.txt', 'three.txt']);
      assert.deepEqual(await fsp.readdir(join(target, 'data/dir')), ['new.txt']);
      assert.equal(await fsp.readFile(join(target, 'data/kept.txt'), 'utf8'), 'kept\n');
      assert.equal(await fsp.readFile(join(target, 'bin/hello'), 'utf8'), '#!/bin/sh\necho hello\n');
      await assert.rejects(fsp.writeFile(join(target, 'x'), 'y'), /EROFS|read-only/);
    } finally {
      const u = await berth(d.address, ['images', 'unmount', '--rm', target], { namespace: ns });
      assert.equal(u.code, 0, u.stderr);
      await fsp.rmdir(target);
    }
    assert.equal((await snapshotNames(d.connect(ns))).has(target), false, 'mount snapshot removed');
  });

  it('unpacks into the namespace default snapshotter and --snapshotter', async () => {
    await run('ctr', ['namespaces', 'create', 'nativens', 'containerd.io/defaults/snapshotter=native'], 'default');
    await run('berth', ['images', 'pull', '--plain-http', layeredRef], 'nativens');
    await assertPulled('nativens', layeredRef, layered, 'manifest', 'native');
    await run('berth', ['images', 'pull', '--plain-http', '--snapshotter', 'native', simpleRef], 'explicit');
    await assertPulled('explicit', simpleRef, simple, 'index', 'native');
  });

  it('chooses platforms: default, --platform, --all-platforms', async () => {
    const amd = buildImage([baseLayer(), [{ path: 'amd', data: 'amd' }]], { architecture: 'amd64' });
    const arm = buildImage([baseLayer(), [{ path: 'arm', data: 'arm' }]], { architecture: 'arm64' });
    const indexBytes = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        { ...arm.manifest.desc, platform: { os: 'linux', architecture: 'arm64' } },
        { ...amd.manifest.desc, platform: { os: 'linux', architecture: 'amd64' } },
      ],
    }));
    const multi: BuiltImage = { ...amd, index: { bytes: indexBytes, desc: { mediaType: 'application/vnd.oci.image.index.v1+json', digest: sha256(indexBytes), size: indexBytes.length } }, blobs: new Map([...amd.blobs, ...arm.blobs]) };
    multi.blobs.set(multi.index.desc.digest, indexBytes);
    const ref = await pushFixture(reg.host, 'test/multi', 'v1', multi);
    const armLayer = arm.layers[1]!.desc.digest;
    const amdLayer = amd.layers[1]!.desc.digest;

    await run('berth', ['pull', '--plain-http', ref], 'plat1');
    let cs = new ContentClient(d.connect('plat1'));
    assert.ok(await cs.stat(amdLayer));
    assert.equal(await cs.stat(armLayer), undefined, 'other platforms are not fetched');
    assert.ok((await snapshotNames(d.connect('plat1'))).has(amd.chainIDs[1]!));

    const out = await run('berth', ['pull', '--plain-http', '--platform', 'linux/arm64', '--print-chainid', ref], 'plat2');
    assert.match(out, new RegExp(`unpacking linux/arm64 ${multi.index.desc.digest}`));
    assert.match(out, new RegExp(`image chain ID: ${arm.chainIDs[1]}`));
    cs = new ContentClient(d.connect('plat2'));
    assert.ok(await cs.stat(armLayer));
    assert.equal(await cs.stat(amdLayer), undefined);

    await run('berth', ['pull', '--plain-http', '--all-platforms', ref], 'plat3');
    cs = new ContentClient(d.connect('plat3'));
    assert.ok(await cs.stat(armLayer) && await cs.stat(amdLayer));
    const snaps = await snapshotNames(d.connect('plat3'));
    assert.ok(snaps.has(amd.chainIDs[1]!) && snaps.has(arm.chainIDs[1]!), 'every platform unpacked');

    // --all-metadata: every platform's manifest and config, the layers of this one only;
    // content fetch --metadata-only: no layers at all. The real ctr must leave the same.
    const metadata = [multi.index.desc.digest, amd.manifest.desc.digest, arm.manifest.desc.digest, amd.config.desc.digest, arm.config.desc.digest];
    const amdLayers = amd.layers.map((l) => l.desc.digest);
    const stored = async (ns: string) => (await run('ctr', ['content', 'ls', '-q'], ns)).split('\n').filter(Boolean).sort();
    for (const tool of ['berth', 'ctr'] as const) {
      await run(tool, ['images', 'pull', '--plain-http', '--all-metadata', ref], `allmeta-${tool}`);
      assert.deepEqual(await stored(`allmeta-${tool}`), [...metadata, ...amdLayers].sort(), `${tool} pull --all-metadata`);
      await run(tool, ['content', 'fetch', '--plain-http', '--metadata-only', ref], `metaonly-${tool}`);
      assert.deepEqual(await stored(`metaonly-${tool}`), [...metadata].sort(), `${tool} content fetch --metadata-only`);
    }
  });

  it('snapshots unpack unpacks a fetched image by its target digest, as ctr', async () => {
    for (const tool of ['berth', 'ctr'] as const) {
      const ns = `unpack-${tool}`;
      await run(tool, ['content', 'fetch', '--plain-http', layeredRef], ns);
      assert.equal((await snapshotNames(d.connect(ns))).size, 0, 'fetch alone unpacks nothing');
      const target = layered.manifest.desc;
      const out = await run(tool, ['snapshots', 'unpack', target.digest], ns);
      assert.equal(out, `unpacking ${target.digest} (${target.mediaType})...done\n`);
      const snaps = await snapshotNames(d.connect(ns));
      layered.chainIDs.forEach((c, i) => assert.equal(snaps.get(c), i === 0 ? '' : layered.chainIDs[i - 1], `${tool}: snapshot ${c}`));
      const missing = await (tool === 'ctr' ? ctr : berth)(d.address, ['snapshots', 'unpack', `sha256:${'1'.repeat(64)}`], { namespace: ns });
      assert.deepEqual([missing.code, missing.stderr.trim()], [1, `${tool}: manifest not found`]);
    }
  });

  it('content fetch-object and push-object move single objects, as ctr', async () => {
    // fetch-object: the bytes the reference resolves to (simpleRef's root is its index).
    const fetched = await execa(process.execPath, [BERTH, '-a', d.address, 'content', 'fetch-object', '--plain-http', simpleRef], { encoding: 'buffer' });
    assert.ok(Buffer.from(fetched.stdout).equals(simple.index.bytes));
    const theirs = await execa('ctr', ['-a', d.address, 'content', 'fetch-object', '--plain-http', simpleRef], { encoding: 'buffer' });
    assert.ok(Buffer.from(theirs.stdout).equals(simple.index.bytes));

    // push-object: config and layers, then the manifest under the reference's tag; the
    // registry checks that a manifest's blobs are there, and a pull of the new name works.
    const ns = 'objects';
    await run('berth', ['content', 'fetch', '--plain-http', simpleRef], ns);
    const target = `${reg.host}/test/objects:v2`;
    const objects = [simple.config.desc, ...simple.layers.map((l) => l.desc), simple.manifest.desc];
    for (const o of objects) {
      assert.equal(await run('berth', ['content', 'push-object', '--plain-http', target, o.digest, o.mediaType], ns), `Pushed ${o.digest} ${o.mediaType}\n`);
    }
    await run('ctr', ['images', 'pull', '--plain-http', target], 'objects-pulled');
    const img = (await d.connect('objects-pulled').service(ImagesDefinition).get({ name: target })).image!;
    assert.equal(img.target?.digest, simple.manifest.desc.digest);
    // --http-trace and --http-dump show the registry traffic on stderr.
    const traced = await berth(d.address, ['content', 'fetch-object', '--plain-http', '--http-trace', simpleRef], { namespace: ns });
    assert.match(traced.stderr, new RegExp(`^http: HEAD http://${reg.host}/v2/test/simple/manifests/v1 -> 200 \\(`, 'm'));
    const dumped = await berth(d.address, ['content', 'fetch-object', '--plain-http', '--http-dump', simpleRef], { namespace: ns });
    assert.match(dumped.stderr, new RegExp(`^> GET http://${reg.host}/v2/test/simple/manifests/${simple.index.desc.digest}\n`, 'm'));
    assert.match(dumped.stderr, /^< 200 OK\n/m);
    const bad = await berth(d.address, ['content', 'push-object', '--plain-http', target, 'sha256:nothex', 'x'], { namespace: ns });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /invalid digest "sha256:nothex"/);
  });

  it('client.pull reports the unpacked chain ids and times', async () => {
    const conn = new Connection({ address: d.address, namespace: 'api' });
    try {
      const res = await pull(conn, layeredRef, { remote: { plainHttp: true }, labels: { from: 'api' } });
      assert.deepEqual(res.unpacked, [{ platform: 'linux/amd64', chainID: layered.chainIDs.at(-1), snapshotter: 'overlayfs' }]);
      assert.deepEqual(res.image.labels, { from: 'api' });
      assert.equal(conn.lease, undefined, 'temporary lease released');
    } finally {
      conn.close();
    }
    await assertPulled('api', layeredRef, layered, 'manifest');
  });
});

describe('a registry serving bad content', () => {
  /** A minimal registry over `img` whose layer bytes are replaced by `corrupt(bytes)`. */
  async function badRegistry(img: BuiltImage, corrupt: (b: Buffer) => Buffer) {
    const layer = img.layers.at(-1)!.desc.digest;
    return startServer((req, res) => {
      const url = req.url ?? '';
      if (url === '/v2/' || url === '/v2') return res.writeHead(200).end('{}');
      let m = /^\/v2\/bad\/img\/manifests\/(.+)$/.exec(url);
      if (m) {
        const bytes = img.manifest.bytes;
        res.writeHead(200, { 'content-type': img.manifest.desc.mediaType, 'docker-content-digest': img.manifest.desc.digest, 'content-length': String(bytes.length) });
        return res.end(req.method === 'HEAD' ? undefined : bytes);
      }
      m = /^\/v2\/bad\/img\/blobs\/(sha256:\w+)$/.exec(url);
      const blob = m && img.blobs.get(m[1]!);
      if (!blob) return res.writeHead(404).end();
      const body = m![1] === layer ? corrupt(blob) : blob;
      res.writeHead(200, { 'content-length': String(body.length), 'content-type': 'application/octet-stream' });
      return res.end(req.method === 'HEAD' ? undefined : body);
    });
  }

  for (const [what, corrupt] of [
    ['a wrong digest', (b: Buffer) => { const c = Buffer.from(b); c[c.length - 10] ^= 0xff; return c; }],
    ['too few bytes', (b: Buffer) => b.subarray(0, b.length - 100)],
    ['too many bytes', (b: Buffer) => Buffer.concat([b, Buffer.alloc(100)])],
  ] as const) {
    it(`fails on ${what} and commits nothing`, async () => {
      const img = buildImage([baseLayer(), [{ path: 'x', data: randomBytes(5000) }]]);
      const srv = await badRegistry(img, corrupt);
      const ns = `bad${what.length}`;
      try {
        const r = await berth(d.address, ['pull', '--plain-http', `${srv.host}/bad/img:v1`], { namespace: ns });
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /digest mismatch|content ended|larger than|expected|bytes/i);
        const cs = new ContentClient(d.connect(ns));
        assert.equal(await cs.stat(img.layers.at(-1)!.desc.digest), undefined, 'corrupt layer not committed');
        assert.deepEqual(await cs.listStatuses(), [], 'no partial ingest left');
        assert.deepEqual((await d.connect(ns).service(ImagesDefinition).list({})).images, [], 'no image record');
        assert.equal([...(await snapshotNames(d.connect(ns))).keys()].filter((k) => k.startsWith('extract-')).length, 0);
      } finally {
        await srv.stop();
      }
    });
  }
});

describe('berth against a real containerd', () => {
  let cd: Containerd;
  before(async () => { cd = await startContainerd(); });
  after(async () => { await cd?.stop(); });

  it('berth pull leaves what ctr expects (check complete, chain-id snapshots, labels)', async () => {
    const r = await berth(cd.address, ['images', 'pull', '--plain-http', layeredRef], { namespace: 'bc' });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const check = await ctr(cd.address, ['images', 'check'], { namespace: 'bc' });
    assert.match(check.stdout, /complete \(4\/4\).*true/);
    const snaps = await ctr(cd.address, ['snapshots', 'ls'], { namespace: 'bc' });
    for (const c of layered.chainIDs) assert.match(snaps.stdout, new RegExp(`^${c}\\s`, 'm'));
    const info = await ctr(cd.address, ['content', 'ls'], { namespace: 'bc' });
    assert.match(info.stdout, new RegExp(`${layered.config.desc.digest}.*containerd.io/gc.ref.snapshot.overlayfs=${layered.chainIDs.at(-1)}`));
    for (const l of layered.layers) assert.match(info.stdout, new RegExp(`${l.desc.digest}.*containerd.io/uncompressed=${l.diffID}`));
    // ctr's own unpack finds nothing to do, and containerd's pull of the same ref agrees on chain ids.
    const again = await ctr(cd.address, ['images', 'pull', '--plain-http', layeredRef], { namespace: 'bc' });
    assert.equal(again.code, 0, again.stderr);
    const other = await ctr(cd.address, ['images', 'pull', '--plain-http', layeredRef], { namespace: 'viactr' });
    assert.equal(other.code, 0, other.stderr);
    const snaps2 = await ctr(cd.address, ['snapshots', 'ls'], { namespace: 'viactr' });
    for (const c of layered.chainIDs) assert.match(snaps2.stdout, new RegExp(`^${c}\\s`, 'm'));
  });

  it('berth images ls/check read containerd the same way', async () => {
    const ls = await berth(cd.address, ['images', 'check'], { namespace: 'bc' });
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /complete \(4\/4\)\s+\S+ \S+\/\S+ \S+\s+true/);
  });
});

describe('push', () => {
  it('berth push and ctr push a pulled image to another repository; it pulls back', async () => {
    const ns = 'pusher';
    await run('berth', ['pull', '--plain-http', layeredRef], ns);
    const target = `${reg.host}/pushed/by-berth:v1`;
    await run('berth', ['images', 'tag', layeredRef, target], ns);
    const out = await run('berth', ['images', 'push', '--plain-http', target], ns);
    assert.match(out, /elapsed:/);
    const ctrTarget = `${reg.host}/pushed/by-ctr:v1`;
    await run('ctr', ['images', 'tag', layeredRef, ctrTarget], ns);
    await run('ctr', ['images', 'push', '--plain-http', ctrTarget], ns);
    for (const ref of [target, ctrTarget]) {
      const back = `back${ref.includes('berth') ? 'b' : 'c'}`;
      await run('ctr', ['images', 'pull', '--plain-http', ref], back);
      await assertPulled(back, ref, layered, 'manifest');
    }
    // Pushing again: everything exists already.
    await run('berth', ['push', '--plain-http', target, layeredRef], ns);
  });
});
