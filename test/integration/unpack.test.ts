// Import, unpack and export: OCI and Docker archives (built by scripts/make-image.mjs and by the
// test fixtures) imported with berth and with the real ctr, unpacked so `ctr images check`
// reports them complete; berth's Docker-archive import produces the same manifest digest as
// containerd's; exports are OCI archives both tools import again.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { berth, ctr, REPO, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { ImagesDefinition } from '../../api/gen/services/images/v1/images.js';
import { SnapshotsDefinition } from '../../api/gen/services/snapshots/v1/snapshots.js';
import { ContentClient } from '../../client/images/content.js';
import { getImage, ensureUnpacked, isUnpacked } from '../../client/images/index.js';
import { baseLayer, buildImage, dockerArchive, layeredSpecs, ociArchive } from '../unit/client/images/fixtures.js';
import { startContainerd, type Containerd } from '../unit/client/pull/containerd.js';

let d: TestDaemon;
let cd: Containerd;
let dir: string;
const files: Record<string, string> = {};

before(async () => {
  [d, cd] = await Promise.all([startDaemon(), startContainerd()]);
  dir = await fsp.mkdtemp(join(tmpdir(), 'berth-archives-'));
  for (const format of ['oci', 'docker']) {
    const out = join(dir, `busybox.${format}.tar`);
    execFileSync(process.execPath, [join(REPO, 'scripts/make-image.mjs'), '--out', out, '--format', format, '--name', 'docker.io/library/busybox:latest']);
    files[format] = out;
  }
  const layered = buildImage(layeredSpecs());
  files.layered = join(dir, 'layered.oci.tar');
  await fsp.writeFile(files.layered, ociArchive(layered, 'example.com/test/layered:v1'));
  files.layeredDocker = join(dir, 'layered.docker.tar');
  await fsp.writeFile(files.layeredDocker, dockerArchive(layered, 'example.com/test/layered:d1'));
});

after(async () => {
  await Promise.allSettled([d?.dispose(), cd?.stop(), dir && fsp.rm(dir, { recursive: true, force: true })]);
});

const run = async (tool: 'ctr' | 'berth', address: string, args: string[], ns: string) => {
  const r = tool === 'ctr' ? await ctr(address, args, { namespace: ns }) : await berth(address, args, { namespace: ns });
  assert.equal(r.code, 0, `${tool} ${args.join(' ')}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
};

async function checkComplete(address: string, ns: string, name: string) {
  const out = await run('ctr', address, ['images', 'check'], ns);
  const line = out.split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line, `${name} listed by ctr images check:\n${out}`);
  assert.match(line!, /complete \((\d+)\/\1\)\s+\S+ \S+\/\S+ \S+\s+true/, line);
}

describe('import', () => {
  it('berth imports an OCI archive, names it from the annotation, unpacks it', async () => {
    const out = await run('berth', d.address, ['images', 'import', files.oci!], 'ioci');
    assert.match(out, /^unpacking docker.io\/library\/busybox:latest \(sha256:\w{64}\)\.\.\.done$/m);
    await checkComplete(d.address, 'ioci', 'docker.io/library/busybox:latest');
    const img = await getImage(d.connect('ioci'), 'docker.io/library/busybox:latest');
    assert.deepEqual(img.config.config?.Cmd, ['/bin/sh']);
    assert.equal(img.layers.length, 1);
    assert.equal(img.record.target.annotations?.['io.containerd.image.name'], 'docker.io/library/busybox:latest');
    assert.ok(await isUnpacked(d.connect('ioci'), img));
    const cs = new ContentClient(d.connect('ioci'));
    const info = await cs.info(img.manifestDesc.digest);
    assert.equal(info.labels['containerd.io/gc.ref.content.config'], img.configDesc.digest);
    assert.equal(info.labels['containerd.io/gc.ref.content.l.0'], img.layers[0]!.blob.digest);
    assert.equal((await cs.info(img.configDesc.digest)).labels['containerd.io/gc.ref.snapshot.overlayfs'], img.chainID);
    assert.deepEqual(await cs.listStatuses(), []);
  });

  it('berth imports a Docker archive with the same manifest digest as containerd', async () => {
    await run('berth', d.address, ['images', 'import', files.docker!], 'idocker');
    await checkComplete(d.address, 'idocker', 'docker.io/library/busybox:latest');
    await run('ctr', cd.address, ['images', 'import', files.docker!], 'idocker');
    const ours = (await d.connect('idocker').service(ImagesDefinition).get({ name: 'docker.io/library/busybox:latest' })).image!;
    const theirs = await run('ctr', cd.address, ['images', 'ls'], 'idocker');
    assert.equal(ours.target?.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
    assert.match(theirs, new RegExp(`^docker.io/library/busybox:latest\\s+application/vnd.docker.distribution.manifest.v2\\+json\\s+${ours.target!.digest}\\s`, 'm'));
    const img = await getImage(d.connect('idocker'), 'docker.io/library/busybox:latest');
    assert.equal(img.layers[0]!.blob.mediaType, 'application/vnd.docker.image.rootfs.diff.tar');
    // --compress-blobs turns the plain layer into a gzip blob labelled with its diff id.
    await run('berth', d.address, ['images', 'import', '--compress-blobs', files.docker!], 'icompress');
    const c = await getImage(d.connect('icompress'), 'docker.io/library/busybox:latest');
    assert.equal(c.layers[0]!.blob.mediaType, 'application/vnd.docker.image.rootfs.diff.tar.gzip');
    assert.equal((await new ContentClient(d.connect('icompress')).info(c.layers[0]!.blob.digest)).labels['containerd.io/uncompressed'], c.layers[0]!.diffID);
    await checkComplete(d.address, 'icompress', 'docker.io/library/busybox:latest');
  });

  it('the real ctr imports into berthd (OCI and Docker)', async () => {
    for (const f of [files.oci!, files.docker!]) {
      const ns = `ctrimp-${f.includes('oci') ? 'oci' : 'docker'}`;
      const out = await run('ctr', d.address, ['images', 'import', f], ns);
      assert.match(out, /unpacking docker.io\/library\/busybox:latest \(sha256:\w{64}\)\.\.\.done/);
      await checkComplete(d.address, ns, 'docker.io/library/busybox:latest');
    }
  });

  it('applies whiteouts and opaque dirs of imported layered images (OCI and Docker)', async () => {
    for (const [f, name] of [[files.layered!, 'example.com/test/layered:v1'], [files.layeredDocker!, 'example.com/test/layered:d1']] as const) {
      const ns = `lay${name.slice(-2)}`;
      await run('berth', d.address, ['images', 'import', f], ns);
      await checkComplete(d.address, ns, name);
      const target = await fsp.mkdtemp(join(tmpdir(), 'berth-imnt-'));
      try {
        await run('berth', d.address, ['images', 'mount', name, target], ns);
        assert.deepEqual((await fsp.readdir(join(target, 'data'))).sort(), ['dir', 'kept.txt', 'three.txt']);
        assert.deepEqual(await fsp.readdir(join(target, 'data/dir')), ['new.txt']);
      } finally {
        await run('berth', d.address, ['images', 'unmount', '--rm', target], ns);
        await fsp.rmdir(target);
      }
    }
  });

  it('supports --base-name, --digests, --index-name and --no-unpack', async () => {
    const ns = 'names';
    const archive = join(dir, 'named.tar');
    // An OCI archive whose entry carries only an OCI ref name (a bare tag).
    const img = buildImage([baseLayer()]);
    const raw = ociArchive(img, 'x');
    await fsp.writeFile(archive, raw);
    const tarDir = join(dir, 'named');
    await fsp.mkdir(tarDir);
    execFileSync('tar', ['-xf', archive, '-C', tarDir]);
    const idx = JSON.parse(await fsp.readFile(join(tarDir, 'index.json'), 'utf8'));
    idx.manifests[0].annotations = { 'org.opencontainers.image.ref.name': 'v9' };
    await fsp.writeFile(join(tarDir, 'index.json'), JSON.stringify(idx));
    execFileSync('tar', ['-cf', archive, '-C', tarDir, '.']);
    await run('berth', d.address, ['images', 'import', '--no-unpack', '--base-name', 'foo/bar', '--digests', '--index-name', 'the-index', archive], ns);
    const names = (await d.connect(ns).service(ImagesDefinition).list({})).images.map((i) => i.name).sort();
    assert.deepEqual(names, ['foo/bar:v9', `foo/bar@${img.manifest.desc.digest}`, 'the-index']);
    const conn = d.connect(ns);
    const h = await getImage(conn, 'foo/bar:v9');
    assert.equal(await isUnpacked(conn, h), false, '--no-unpack');
    assert.deepEqual(await ensureUnpacked(conn, h), { chainID: img.chainIDs[0], snapshotter: 'overlayfs', unpacked: true });
    assert.deepEqual(await ensureUnpacked(conn, 'foo/bar:v9'), { chainID: img.chainIDs[0], snapshotter: 'overlayfs', unpacked: false });
    // Without a base name, bare tags get the dated import- prefix.
    await run('berth', d.address, ['images', 'import', '--no-unpack', archive], 'names2');
    const n2 = (await d.connect('names2').service(ImagesDefinition).list({})).images.map((i) => i.name);
    assert.deepEqual(n2, [`import-${new Date().toISOString().slice(0, 10)}:v9`]);
    // Bare tags always take the base name.
    await run('berth', d.address, ['images', 'import', '--no-unpack', '--base-name', 'other/repo', archive], 'names3');
    assert.deepEqual((await d.connect('names3').service(ImagesDefinition).list({})).images.map((i) => i.name), ['other/repo:v9']);
  });

  it('refuses what is not an image archive, from stdin too', async () => {
    const r = await berth(d.address, ['images', 'import', '-'], { namespace: 'junk', input: Buffer.concat([Buffer.from('hello'), Buffer.alloc(2000)]) });
    assert.notEqual(r.code, 0);
    const empty = execFileSync('tar', ['-c', '-f', '-', '--files-from', '/dev/null']);
    const r2 = await berth(d.address, ['images', 'import', '-'], { namespace: 'junk', input: empty });
    assert.notEqual(r2.code, 0);
    assert.match(r2.stderr, /unrecognized image format/);
  });
});

describe('export', () => {
  it('writes an OCI archive that berth and ctr import again', async () => {
    const ns = 'exp';
    await run('berth', d.address, ['images', 'import', files.oci!], ns);
    await run('berth', d.address, ['images', 'tag', 'docker.io/library/busybox:latest', 'example.com/copy:v1'], ns);
    const out = join(dir, 'export.tar');
    await run('berth', d.address, ['images', 'export', out, 'docker.io/library/busybox:latest', 'example.com/copy:v1'], ns);
    const names = execFileSync('tar', ['-tf', out]).toString().split('\n').filter(Boolean);
    assert.ok(names.includes('index.json') && names.includes('oci-layout') && names.includes('manifest.json'), names.join(' '));
    assert.ok(names.some((n) => /^blobs\/sha256\/[a-f0-9]{64}$/.test(n)));
    const index = JSON.parse(execFileSync('tar', ['-xOf', out, 'index.json']).toString());
    assert.deepEqual(index.manifests.map((m: any) => [m.annotations['io.containerd.image.name'], m.annotations['org.opencontainers.image.ref.name']]),
      [['docker.io/library/busybox:latest', 'latest'], ['example.com/copy:v1', 'v1']]);
    const dm = JSON.parse(execFileSync('tar', ['-xOf', out, 'manifest.json']).toString());
    assert.deepEqual(dm[0].RepoTags.sort(), ['busybox:latest', 'example.com/copy:v1']);
    for (const [tool, address] of [['ctr', cd.address], ['ctr', d.address], ['berth', d.address]] as const) {
      const ns2 = `reimp-${tool}-${address === d.address ? 'b' : 'c'}`;
      await run(tool, address, ['images', 'import', out], ns2);
      await checkComplete(address, ns2, 'example.com/copy:v1');
      await checkComplete(address, ns2, 'docker.io/library/busybox:latest');
    }
    // ctr's export of berthd's image is importable by berth.
    const out2 = join(dir, 'export-ctr.tar');
    await run('ctr', d.address, ['images', 'export', out2, 'example.com/copy:v1'], ns);
    await run('berth', d.address, ['images', 'import', out2], 'fromctr');
    await checkComplete(d.address, 'fromctr', 'example.com/copy:v1');
    // To stdout.
    const piped = execFileSync(process.execPath, [join(REPO, 'bin/berth.js'), '-a', d.address, '-n', ns, 'images', 'export', '-', 'example.com/copy:v1'], { maxBuffer: 1 << 30 });
    assert.ok(execFileSync('tar', ['-t'], { input: piped, maxBuffer: 1 << 30 }).toString().includes('index.json'));
  });

  it('skips other platforms of an index unless --all-platforms', async () => {
    const ns = 'expplat';
    const amd = buildImage([baseLayer(), [{ path: 'amd', data: 'amd' }]], { architecture: 'amd64' });
    const arm = buildImage([baseLayer(), [{ path: 'arm', data: 'arm' }]], { architecture: 'arm64' });
    const index = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        { ...amd.manifest.desc, platform: { os: 'linux', architecture: 'amd64' } },
        { ...arm.manifest.desc, platform: { os: 'linux', architecture: 'arm64' } },
      ],
    }));
    // An archive of the index with only the amd64 blobs (as after a single-platform pull).
    const layout = join(dir, 'multi');
    await fsp.mkdir(join(layout, 'blobs/sha256'), { recursive: true });
    const { createHash } = await import('node:crypto');
    const idxDigest = createHash('sha256').update(index).digest('hex');
    await fsp.writeFile(join(layout, 'blobs/sha256', idxDigest), index);
    for (const [digest, bytes] of amd.blobs) if (digest !== amd.index.desc.digest) await fsp.writeFile(join(layout, 'blobs/sha256', digest.slice(7)), bytes);
    await fsp.writeFile(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    await fsp.writeFile(join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.index.v1+json', digest: `sha256:${idxDigest}`, size: index.length, annotations: { 'io.containerd.image.name': 'example.com/multi:v1' } }] }));
    const archive = join(dir, 'multi.tar');
    execFileSync('tar', ['-cf', archive, '-C', layout, '.']);
    await run('berth', d.address, ['images', 'import', archive], ns);
    await checkComplete(d.address, ns, 'example.com/multi:v1');
    const out = join(dir, 'multi-export.tar');
    await run('berth', d.address, ['images', 'export', out, 'example.com/multi:v1'], ns);
    const names = execFileSync('tar', ['-tf', out]).toString();
    assert.ok(names.includes(amd.layers[1]!.desc.digest.slice(7)));
    assert.ok(!names.includes(arm.layers[1]!.desc.digest.slice(7)));
    const all = await berth(d.address, ['images', 'export', '--all-platforms', join(dir, 'x.tar'), 'example.com/multi:v1'], { namespace: ns });
    assert.notEqual(all.code, 0, 'all platforms need every manifest');
    assert.match(all.stderr, /not found/);
  });
});

describe('client helpers for run', () => {
  it('getImage + ensureUnpacked give the config and a usable chain id', async () => {
    const conn = d.connect('runhelp');
    await run('berth', d.address, ['images', 'import', '--no-unpack', files.oci!], 'runhelp');
    const img = await getImage(conn, 'docker.io/library/busybox:latest', { platform: 'linux/amd64' });
    assert.equal(img.platform, 'linux/amd64');
    assert.deepEqual(img.config.config?.Env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);
    const r = await ensureUnpacked(conn, img);
    assert.equal(r.unpacked, true);
    const info = await conn.service(SnapshotsDefinition).stat({ snapshotter: 'overlayfs', key: r.chainID });
    assert.equal(info.info?.name, img.chainID);
    assert.equal(conn.lease, undefined);
  });
});
