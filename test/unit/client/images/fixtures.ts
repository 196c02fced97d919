// Image fixtures for the image/pull/unpack tests: layers built in memory from tar specs
// (gzip, zstd or plain), config + manifest + index with correct digests, diff ids and chain ids,
// OCI and Docker archives of them, and pushing them into a registry with the registry client.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';
import { buildTar, type TarSpec } from '../../plugins/differ/walking/archive/helpers.js';
import { chainIDs } from '../../../../core/images/identity.js';
import type { Descriptor } from '../../../../core/images/images.js';

export type { TarSpec };

export const sha256 = (b: Uint8Array | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
export const T0 = new Date('2024-01-01T00:00:00Z');

export type Compression = 'gzip' | 'zstd' | 'none';

export function compress(raw: Buffer, c: Compression): Buffer {
  if (c === 'gzip') return gzipSync(raw, { level: 1 });
  if (c === 'zstd') return execFileSync('zstd', ['-q', '-c', '-1'], { input: raw, maxBuffer: 1 << 30 });
  return raw;
}

export const layerMediaType = (c: Compression, docker = false) =>
  docker
    ? c === 'none' ? 'application/vnd.docker.image.rootfs.diff.tar' : 'application/vnd.docker.image.rootfs.diff.tar.gzip'
    : c === 'gzip' ? 'application/vnd.oci.image.layer.v1.tar+gzip' : c === 'zstd' ? 'application/vnd.oci.image.layer.v1.tar+zstd' : 'application/vnd.oci.image.layer.v1.tar';

export interface BuiltLayer {
  raw: Buffer;
  blob: Buffer;
  desc: Descriptor;
  diffID: string;
}

export interface BuiltImage {
  layers: BuiltLayer[];
  config: { bytes: Buffer; desc: Descriptor };
  manifest: { bytes: Buffer; desc: Descriptor };
  index: { bytes: Buffer; desc: Descriptor };
  diffIDs: string[];
  chainIDs: string[];
  /** Every blob by digest (index, manifest, config, layers). */
  blobs: Map<string, Buffer>;
}

export interface BuildOptions {
  compression?: Compression;
  architecture?: string;
  os?: string;
  docker?: boolean;
  cmd?: string[];
}

export function buildLayer(specs: TarSpec[], c: Compression = 'gzip', docker = false): BuiltLayer {
  const raw = buildTar(specs.map((s) => ({ mtime: T0, ...s })));
  const blob = compress(raw, c);
  return { raw, blob, desc: { mediaType: layerMediaType(c, docker), digest: sha256(blob), size: blob.length }, diffID: sha256(raw) };
}

/** An image of the given layers (each a list of tar entries). */
export function buildImage(layerSpecs: TarSpec[][], opts: BuildOptions = {}): BuiltImage {
  const c = opts.compression ?? 'gzip';
  const layers = layerSpecs.map((s) => buildLayer(s, c, opts.docker));
  const diffIDs = layers.map((l) => l.diffID);
  const configBytes = Buffer.from(JSON.stringify({
    architecture: opts.architecture ?? 'amd64',
    os: opts.os ?? 'linux',
    config: { Cmd: opts.cmd ?? ['/bin/sh'], Env: ['PATH=/bin'] },
    rootfs: { type: 'layers', diff_ids: diffIDs },
  }));
  const config: Descriptor = {
    mediaType: opts.docker ? 'application/vnd.docker.container.image.v1+json' : 'application/vnd.oci.image.config.v1+json',
    digest: sha256(configBytes),
    size: configBytes.length,
  };
  const manifestBytes = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: opts.docker ? 'application/vnd.docker.distribution.manifest.v2+json' : 'application/vnd.oci.image.manifest.v1+json',
    config,
    layers: layers.map((l) => l.desc),
  }));
  const manifest: Descriptor = {
    mediaType: opts.docker ? 'application/vnd.docker.distribution.manifest.v2+json' : 'application/vnd.oci.image.manifest.v1+json',
    digest: sha256(manifestBytes),
    size: manifestBytes.length,
  };
  const indexBytes = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [{ ...manifest, platform: { architecture: opts.architecture ?? 'amd64', os: opts.os ?? 'linux' } }],
  }));
  const index: Descriptor = { mediaType: 'application/vnd.oci.image.index.v1+json', digest: sha256(indexBytes), size: indexBytes.length };
  const blobs = new Map<string, Buffer>([[index.digest, indexBytes], [manifest.digest, manifestBytes], [config.digest, configBytes]]);
  for (const l of layers) blobs.set(l.desc.digest, l.blob);
  return {
    layers,
    config: { bytes: configBytes, desc: config },
    manifest: { bytes: manifestBytes, desc: manifest },
    index: { bytes: indexBytes, desc: index },
    diffIDs,
    chainIDs: chainIDs(diffIDs),
    blobs,
  };
}

/** A small rootfs layer: /bin/hello, /etc/passwd, a few dirs. */
export function baseLayer(): TarSpec[] {
  return [
    { path: 'bin/', type: 'Directory' },
    { path: 'bin/hello', data: '#!/bin/sh\necho hello\n', mode: 0o755 },
    { path: 'etc/', type: 'Directory' },
    { path: 'etc/passwd', data: 'root:x:0:0:root:/root:/bin/sh\n' },
    { path: 'etc/group', data: 'root:x:0:\n' },
    { path: 'tmp/', type: 'Directory', mode: 0o1777 },
  ];
}

/**
 * Three layers: the base with /data/kept.txt, /data/gone.txt and /data/dir/old.txt; then a
 * whiteout of gone.txt and an opaque /data/dir holding only new.txt; then /data/three.txt.
 */
export function layeredSpecs(): TarSpec[][] {
  return [
    [
      ...baseLayer(),
      { path: 'data/', type: 'Directory' },
      { path: 'data/kept.txt', data: 'kept\n' },
      { path: 'data/gone.txt', data: 'gone\n' },
      { path: 'data/dir/', type: 'Directory' },
      { path: 'data/dir/old.txt', data: 'old\n' },
      { path: 'data/dir/sub/', type: 'Directory' },
      { path: 'data/dir/sub/deep.txt', data: 'deep\n' },
    ],
    [
      { path: 'data/', type: 'Directory' },
      { path: 'data/.wh.gone.txt' },
      { path: 'data/dir/', type: 'Directory' },
      { path: 'data/dir/.wh..wh..opq' },
      { path: 'data/dir/new.txt', data: 'new\n' },
    ],
    [
      { path: 'data/', type: 'Directory' },
      { path: 'data/three.txt', data: 'three\n' },
    ],
  ];
}

function tarFile(name: string, data: Buffer, mode = 0o644): Buffer[] {
  const h = new Header({ path: name, type: 'File', size: data.length, mode, mtime: T0, uid: 0, gid: 0 });
  h.encode();
  const pad = (512 - (data.length % 512)) % 512;
  return [h.block!, data, Buffer.alloc(pad)];
}

function tarDir(name: string): Buffer[] {
  const h = new Header({ path: name, type: 'Directory', size: 0, mode: 0o755, mtime: T0, uid: 0, gid: 0 });
  h.encode();
  return [h.block!];
}

/** An OCI image archive (oci-layout, index.json naming the image, blobs/sha256/…). */
export function ociArchive(img: BuiltImage, name: string): Buffer {
  const tag = name.includes(':') && !name.slice(name.lastIndexOf(':')).includes('/') ? name.slice(name.lastIndexOf(':') + 1) : 'latest';
  const index = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    manifests: [{
      ...img.manifest.desc,
      annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': tag },
      platform: { architecture: 'amd64', os: 'linux' },
    }],
  }));
  const parts: Buffer[] = [
    ...tarFile('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' }))),
    ...tarFile('index.json', index),
    ...tarDir('blobs/'),
    ...tarDir('blobs/sha256/'),
  ];
  for (const [digest, bytes] of img.blobs) {
    if (digest === img.index.desc.digest) continue;
    parts.push(...tarFile(`blobs/sha256/${digest.slice(7)}`, bytes, 0o444));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** A Docker archive (manifest.json with RepoTags, <id>/layer.tar uncompressed, <config>.json). */
export function dockerArchive(img: BuiltImage, repoTag: string): Buffer {
  const parts: Buffer[] = [];
  const layerPaths: string[] = [];
  img.layers.forEach((l, i) => {
    const dir = sha256(`${i}${l.diffID}`).slice(7);
    parts.push(...tarDir(`${dir}/`), ...tarFile(`${dir}/layer.tar`, l.raw), ...tarFile(`${dir}/VERSION`, Buffer.from('1.0')));
    layerPaths.push(`${dir}/layer.tar`);
  });
  const cfgName = `${img.config.desc.digest.slice(7)}.json`;
  parts.push(...tarFile(cfgName, img.config.bytes));
  parts.push(...tarFile('manifest.json', Buffer.from(JSON.stringify([{ Config: cfgName, RepoTags: [repoTag], Layers: layerPaths }]))));
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** Pushes the image (index as the tag, or the manifest with `manifestOnly`) with the registry client. */
export async function pushFixture(host: string, repo: string, tag: string, img: BuiltImage, opts: { manifestOnly?: boolean } = {}): Promise<string> {
  const { Resolver } = await import('../../../../client/remotes/resolver.js');
  const { pushImage } = await import('../../../../client/remotes/pusher.js');
  const ref = `${host}/${repo}:${tag}`;
  const resolver = new Resolver({ plainHttp: true });
  const pusher = await resolver.pusher(ref);
  const root = opts.manifestOnly ? img.manifest.desc : img.index.desc;
  await pushImage(pusher, root, (d) => {
    const b = img.blobs.get(d.digest);
    if (!b) throw new Error(`fixture has no blob ${d.digest}`);
    return b;
  });
  return ref;
}
