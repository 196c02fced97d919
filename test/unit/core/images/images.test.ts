// Media type classification, gc child labels, ingest ref keys and chain ids.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  chainID, chainIDs, childGCLabel, childrenGCLabels, diffCompression, isIndexType, isKnownConfig, isLayerType,
  isManifestType, isNonDistributable, MediaType, parseMediaType, refKey,
} from '../../../../core/images/images.js';

const d = (c: string) => `sha256:${c.repeat(64)}`;

describe('media types', () => {
  it('classifies manifests, indexes, configs and layers', () => {
    assert.ok(isManifestType(MediaType.ociManifest) && isManifestType(MediaType.dockerManifest));
    assert.ok(!isManifestType(MediaType.ociIndex));
    assert.ok(isIndexType(MediaType.ociIndex) && isIndexType(MediaType.dockerManifestList));
    assert.ok(isKnownConfig(MediaType.ociConfig) && isKnownConfig(MediaType.dockerConfig));
    for (const mt of [MediaType.ociLayer, MediaType.ociLayerGzip, MediaType.ociLayerZstd, MediaType.dockerLayer, MediaType.dockerLayerGzip,
      MediaType.dockerForeignLayerGzip, 'application/vnd.oci.image.layer.v1.tar+gzip+encrypted']) assert.ok(isLayerType(mt), mt);
    assert.ok(!isLayerType(MediaType.ociConfig));
    assert.ok(isNonDistributable(MediaType.dockerForeignLayerGzip) && isNonDistributable(MediaType.ociLayerNonDistributableGzip));
    assert.ok(!isNonDistributable(MediaType.ociLayerGzip));
    assert.deepEqual(parseMediaType('a+z+b'), { base: 'a', exts: ['b', 'z'] });
  });

  it('knows what compression a layer type declares', () => {
    assert.equal(diffCompression(MediaType.ociLayer), '');
    assert.equal(diffCompression(MediaType.ociLayerGzip), 'gzip');
    assert.equal(diffCompression(MediaType.ociLayerZstd), 'zstd');
    assert.equal(diffCompression(MediaType.dockerLayerGzip), 'gzip');
    assert.equal(diffCompression(MediaType.dockerLayer), 'unknown');
    assert.equal(diffCompression(MediaType.ociLayerNonDistributableZstd), 'zstd');
    assert.equal(diffCompression('application/vnd.oci.image.layer.v1.tar+gzip+encrypted'), undefined);
    assert.equal(diffCompression(MediaType.ociManifest), undefined);
  });
});

describe('gc labels and ref keys', () => {
  it('labels children like containerd (config, l.<i>, m.<i>)', () => {
    assert.equal(childGCLabel(MediaType.ociConfig), 'containerd.io/gc.ref.content.config');
    const manifestChildren = [
      { mediaType: MediaType.ociConfig, digest: d('c') },
      { mediaType: MediaType.ociLayerGzip, digest: d('1') },
      { mediaType: MediaType.dockerLayerGzip, digest: d('2') },
    ];
    assert.deepEqual(childrenGCLabels(manifestChildren), {
      'containerd.io/gc.ref.content.config': d('c'),
      'containerd.io/gc.ref.content.l.0': d('1'),
      'containerd.io/gc.ref.content.l.1': d('2'),
    });
    assert.deepEqual(childrenGCLabels([{ mediaType: MediaType.ociManifest, digest: d('a') }, { mediaType: MediaType.dockerManifest, digest: d('b') }]), {
      'containerd.io/gc.ref.content.m.0': d('a'),
      'containerd.io/gc.ref.content.m.1': d('b'),
    });
    assert.deepEqual(childrenGCLabels([{ mediaType: 'application/x-unknown', digest: d('e') }, { mediaType: 'application/x-other', digest: d('f') }]), {
      'containerd.io/gc.ref.content.0': d('e'),
      'containerd.io/gc.ref.content.1': d('f'),
    });
    assert.deepEqual(childrenGCLabels(manifestChildren, true), { 'containerd.io/gc.ref.content.config': d('c') });
  });

  it('names ingests like remotes.MakeRefKey', () => {
    assert.equal(refKey({ mediaType: MediaType.ociManifest, digest: d('a') }), `manifest-${d('a')}`);
    assert.equal(refKey({ mediaType: MediaType.ociIndex, digest: d('a') }), `index-${d('a')}`);
    assert.equal(refKey({ mediaType: MediaType.ociLayerGzip, digest: d('a') }), `layer-${d('a')}`);
    assert.equal(refKey({ mediaType: MediaType.dockerConfig, digest: d('a') }), `config-${d('a')}`);
    assert.equal(refKey({ mediaType: 'x/y', digest: d('a') }), `unknown-${d('a')}`);
    assert.equal(refKey({ mediaType: MediaType.ociManifest, digest: d('a'), annotations: { 'org.opencontainers.image.ref.name': 'v1' } }), `manifest-v1@${d('a')}`);
  });
});

describe('chain ids', () => {
  it('follows the image-spec identity rule', () => {
    const [a, b, c] = [d('1'), d('2'), d('3')];
    const sha = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
    assert.equal(chainID([]), '');
    assert.equal(chainID([a]), a);
    const ab = sha(`${a} ${b}`);
    assert.equal(chainID([a, b]), ab);
    assert.equal(chainID([a, b, c]), sha(`${ab} ${c}`));
    assert.deepEqual(chainIDs([a, b, c]), [a, ab, sha(`${ab} ${c}`)]);
  });

  it('matches a known containerd chain id (busybox 1.36 linux/amd64)', () => {
    // Single-layer images: the chain id is the diff id itself.
    const diff = 'sha256:3d24ee258efc3bfe4066a1a9fb83febf6dc0b1548dfe896161533668281c9f4f';
    assert.equal(chainID([diff]), diff);
  });
});
