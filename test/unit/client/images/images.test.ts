// Client image helpers over an in-memory blob reader: manifest selection by platform, configs,
// platforms, check and size; plus platform parsing/matching.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { NotFoundError } from '../../../../core/errdefs/errdefs.js';
import type { Descriptor } from '../../../../core/images/images.js';
import { check, children, imageContents, imageSize, platformsOf, resolveManifest, validateMediaType } from '../../../../client/images/image.js';
import { all, any, defaultMatcher, format, normalize, only, onlyStrict, ordered, parse, sortByPreference } from '../../../../client/platforms/index.js';
import { baseLayer, buildImage, sha256 } from './fixtures.js';

class Blobs {
  constructor(readonly m: Map<string, Buffer>) {}
  async readBlob(d: Pick<Descriptor, 'digest'>): Promise<Buffer> {
    const b = this.m.get(d.digest);
    if (!b) throw new NotFoundError(`content digest ${d.digest}`);
    return b;
  }
  async stat(digest: string) {
    const b = this.m.get(digest);
    return b ? { digest, size: b.length, createdAt: new Date(), updatedAt: new Date(), labels: {} } : undefined;
  }
}

/** An index with amd64 and arm64 (each its own image) and a manifest without platform. */
function multiArch() {
  const amd = buildImage([baseLayer()], { architecture: 'amd64' });
  const arm = buildImage([baseLayer(), [{ path: 'arm', data: 'arm' }]], { architecture: 'arm64' });
  const blobs = new Map([...amd.blobs, ...arm.blobs]);
  const idxBytes = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      { ...arm.manifest.desc, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      { ...amd.manifest.desc, platform: { os: 'linux', architecture: 'amd64' } },
    ],
  }));
  const index: Descriptor = { mediaType: 'application/vnd.oci.image.index.v1+json', digest: sha256(idxBytes), size: idxBytes.length };
  blobs.set(index.digest, idxBytes);
  return { amd, arm, index, cs: new Blobs(blobs) };
}

describe('platforms', () => {
  it('parses and normalises like containerd', () => {
    assert.deepEqual(parse('linux/amd64'), { os: 'linux', architecture: 'amd64' });
    assert.deepEqual(parse('linux/x86_64'), { os: 'linux', architecture: 'amd64' });
    assert.deepEqual(parse('linux/arm64'), { os: 'linux', architecture: 'arm64' });
    assert.deepEqual(parse('linux/aarch64/v8'), { os: 'linux', architecture: 'arm64', variant: 'v8' });
    assert.deepEqual(parse('linux/arm'), { os: 'linux', architecture: 'arm' });
    assert.deepEqual(parse('linux/arm/v6'), { os: 'linux', architecture: 'arm', variant: 'v6' });
    assert.deepEqual(parse('windows/amd64'), { os: 'windows', architecture: 'amd64' });
    assert.equal(parse('linux').os, 'linux');
    assert.deepEqual(parse('arm64'), { os: 'linux', architecture: 'arm64' });
    assert.throws(() => parse('linux/*'), /wildcards/);
    assert.throws(() => parse('linux/am d64'), /invalid component/);
    assert.throws(() => parse('plan10x'), /unknown operating system or architecture/);
    assert.equal(format({ os: 'linux', architecture: 'arm', variant: 'v7' }), 'linux/arm/v7');
    assert.equal(format({ os: '', architecture: 'x' }), 'unknown');
    assert.deepEqual(normalize({ os: 'Linux', architecture: 'aarch64', variant: '8' }), { os: 'linux', architecture: 'arm64' });
  });

  it('matches compatible platforms with only(), exactly with onlyStrict()', () => {
    const m = only({ os: 'linux', architecture: 'amd64' });
    assert.ok(m.match({ os: 'linux', architecture: 'amd64' }));
    assert.ok(m.match({ os: 'linux', architecture: '386' }));
    assert.ok(!m.match({ os: 'linux', architecture: 'arm64' }));
    assert.ok(m.less({ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: '386' }));
    assert.ok(!onlyStrict({ os: 'linux', architecture: 'amd64' }).match({ os: 'linux', architecture: '386' }));
    const arm = only({ os: 'linux', architecture: 'arm64' });
    assert.ok(arm.match({ os: 'linux', architecture: 'arm', variant: 'v7' }));
    assert.ok(arm.match({ os: 'linux', architecture: 'arm64', variant: 'v8' }));
    assert.ok(all.match({ os: 'plan9', architecture: 'mips' }));
    const a = any({ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' });
    assert.ok(a.match({ os: 'linux', architecture: 'arm64' }) && !a.match({ os: 'linux', architecture: '386' }));
    const o = ordered({ os: 'linux', architecture: 'arm64' }, { os: 'linux', architecture: 'amd64' });
    const sorted = sortByPreference([{ platform: { os: 'linux', architecture: 'amd64' } }, {}, { platform: { os: 'linux', architecture: 'arm64' } }], o);
    assert.deepEqual(sorted.map((x) => x.platform?.architecture), ['arm64', 'amd64', undefined]);
    assert.ok(defaultMatcher().match({ os: 'linux', architecture: process.arch === 'x64' ? 'amd64' : 'arm64' }));
  });
});

describe('image contents', () => {
  it('picks the manifest for the platform from an index', async () => {
    const { amd, arm, index, cs } = multiArch();
    assert.equal((await resolveManifest(cs, index, only(parse('linux/amd64')))).desc.digest, amd.manifest.desc.digest);
    assert.equal((await resolveManifest(cs, index, only(parse('linux/arm64')))).desc.digest, arm.manifest.desc.digest);
    await assert.rejects(resolveManifest(cs, index, only(parse('linux/s390x'))), /no match for platform in manifest/);
    const c = await imageContents(cs, index, only(parse('linux/arm64')));
    assert.equal(c.chainID, arm.chainIDs[1]);
    assert.deepEqual(c.layers.map((l) => l.diffID), arm.diffIDs);
    assert.equal(c.configDesc.digest, arm.config.desc.digest);
  });

  it('lists children and platforms', async () => {
    const { amd, index, cs } = multiArch();
    assert.equal((await children(cs, index)).length, 2);
    assert.deepEqual((await children(cs, amd.manifest.desc)).map((x) => x.digest), [amd.config.desc.digest, ...amd.layers.map((l) => l.desc.digest)]);
    assert.deepEqual((await platformsOf(cs, index)).map(format).sort(), ['linux/amd64', 'linux/arm64/v8']);
    assert.deepEqual((await platformsOf(cs, amd.manifest.desc)).map(format), ['linux/amd64'], 'from the config');
  });

  it('checks presence and size for the platform', async () => {
    const { amd, index, cs } = multiArch();
    const m = only(parse('linux/amd64'));
    const r = await check(cs, index, m);
    assert.deepEqual({ available: r.available, required: r.required.length, present: r.present.length, missing: r.missing.length },
      { available: true, required: 2, present: 2, missing: 0 });
    cs.m.delete(amd.layers[0]!.desc.digest);
    const r2 = await check(cs, index, m);
    assert.equal(r2.missing.length, 1);
    cs.m.delete(amd.manifest.desc.digest);
    const r3 = await check(cs, index, m);
    assert.equal(r3.available, false);
    const fresh = multiArch();
    const size = await imageSize(fresh.cs, fresh.index, m);
    assert.equal(size, fresh.index.size + fresh.amd.manifest.desc.size + fresh.amd.config.desc.size + fresh.amd.layers[0]!.desc.size);
  });

  it('refuses documents that contradict their media type', () => {
    assert.throws(() => validateMediaType(Buffer.from('{"manifests":[{}]}'), 'application/vnd.oci.image.manifest.v1+json'), /expected manifest but found index/);
    assert.throws(() => validateMediaType(Buffer.from('{"layers":[{}]}'), 'application/vnd.oci.image.index.v1+json'), /expected index but found manifest/);
    assert.throws(() => validateMediaType(Buffer.from('{"fsLayers":[{}]}'), 'application/vnd.oci.image.manifest.v1+json'), /schema 1/);
  });
});
