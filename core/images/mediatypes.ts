/**
 * Media types, annotations and the classification helpers both sides of the wire need: the
 * daemon (differ, gc) and the client (pull, unpack, import/export). Values are the OCI and
 * Docker registry strings byte for byte.
 */
export const MediaType = Object.freeze({
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  ociLayerNonDistributable: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  ociLayerNonDistributableGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  ociLayerNonDistributableZstd: 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerSchema1Manifest: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerForeignLayer: 'application/vnd.docker.image.rootfs.foreign.diff.tar',
  dockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  /** Docker's pre-OCI config type some old registries answer with (converted on pull). */
  dockerLegacyConfig: 'application/octet-stream',
  containerdCheckpoint: 'application/vnd.containerd.container.criu.checkpoint.criu.tar',
  containerdCheckpointConfig: 'application/vnd.containerd.container.checkpoint.config.v1+proto',
});

export const Annotation = Object.freeze({
  /** The full image name an archive entry stands for (containerd's own annotation). */
  imageName: 'io.containerd.image.name',
  /** The OCI ref name (usually just the tag). */
  refName: 'org.opencontainers.image.ref.name',
});

/** Labels the unpacker and pull set. */
export const ImageLabel = Object.freeze({
  uncompressed: 'containerd.io/uncompressed',
  snapshotRef: 'containerd.io/snapshot.ref',
  distributionSourcePrefix: 'containerd.io/distribution.source.',
  gcRefContentConfig: 'containerd.io/gc.ref.content.config',
  gcRefContentManifestPrefix: 'containerd.io/gc.ref.content.m.',
  gcRefContentLayerPrefix: 'containerd.io/gc.ref.content.l.',
  gcRefContentPrefix: 'containerd.io/gc.ref.content.',
  gcRefSnapshotPrefix: 'containerd.io/gc.ref.snapshot.',
});

/** Splits "base+ext1+ext2" into the base and its (sorted) extensions. */
export function parseMediaType(mt: string): { base: string; exts: string[] } {
  if (!mt) return { base: '', exts: [] };
  const [base, ...exts] = mt.split('+');
  return { base: base!, exts: exts.sort() };
}

export function isManifestType(mt: string): boolean {
  return mt === MediaType.ociManifest || mt === MediaType.dockerManifest;
}

export function isIndexType(mt: string): boolean {
  return mt === MediaType.ociIndex || mt === MediaType.dockerManifestList;
}

export function isConfigType(mt: string): boolean {
  return mt === MediaType.ociConfig || mt === MediaType.dockerConfig;
}

/** Config types a walk treats as leaves that are "known" (gc label `config`). */
export function isKnownConfig(mt: string): boolean {
  return isConfigType(mt) || mt === MediaType.containerdCheckpoint || mt === MediaType.containerdCheckpointConfig;
}

export function isLayerType(mt: string): boolean {
  if (mt.startsWith('application/vnd.oci.image.layer.')) return true;
  switch (parseMediaType(mt).base) {
    case MediaType.dockerLayer:
    case MediaType.dockerLayerGzip:
    case MediaType.dockerForeignLayer:
    case MediaType.dockerForeignLayerGzip:
      return true;
    default:
      return false;
  }
}

export function isNonDistributable(mt: string): boolean {
  return mt.startsWith('application/vnd.oci.image.layer.nondistributable.') || mt.startsWith('application/vnd.docker.image.rootfs.foreign.');
}

export function isDockerType(mt: string): boolean {
  return mt.startsWith('application/vnd.docker.');
}

/**
 * The compression a layer media type declares: 'gzip' | 'zstd' | '' (none) | 'unknown' (Docker's
 * plain-tar types, which may carry gzip data). Undefined for media types that are not layers
 * (or layer types with an extension berth cannot process, like +encrypted).
 */
export function diffCompression(mt: string): 'gzip' | 'zstd' | '' | 'unknown' | undefined {
  const { base, exts } = parseMediaType(mt);
  switch (base) {
    case MediaType.dockerLayer:
    case MediaType.dockerForeignLayer:
      return exts.length ? undefined : 'unknown';
    case MediaType.dockerLayerGzip:
    case MediaType.dockerForeignLayerGzip:
      return exts.length ? undefined : 'gzip';
    case MediaType.ociLayer:
    case MediaType.ociLayerNonDistributable:
      if (exts.length === 0) return '';
      if (exts.length === 1 && exts[0] === 'gzip') return 'gzip';
      if (exts.length === 1 && exts[0] === 'zstd') return 'zstd';
      return undefined;
    default:
      return undefined;
  }
}

/**
 * The gc label key prefixes a parent sets for a child (containerd's ChildGCLabels): keys
 * ending in "." get an index appended by the caller.
 */
export function childGCLabel(mt: string): string {
  if (isKnownConfig(mt)) return ImageLabel.gcRefContentConfig;
  if (isManifestType(mt)) return ImageLabel.gcRefContentManifestPrefix;
  if (isLayerType(mt)) return ImageLabel.gcRefContentLayerPrefix;
  return ImageLabel.gcRefContentPrefix;
}

/**
 * The labels a manifest or index gets for its children: `…config`, `…l.<i>`, `…m.<i>`, with
 * one running index per key prefix, as containerd's SetChildrenLabels numbers them.
 */
export function childrenGCLabels(children: readonly { mediaType: string; digest: string }[], filterLayers = false): Record<string, string> {
  const out: Record<string, string> = {};
  const counts = new Map<string, number>();
  for (const ch of children) {
    if (filterLayers && isLayerType(ch.mediaType)) continue;
    let key = childGCLabel(ch.mediaType);
    const idx = counts.get(key) ?? 0;
    counts.set(key, idx + 1);
    if (idx > 0 || key.endsWith('.')) key = `${key}${idx}`;
    out[key] = ch.digest;
  }
  return out;
}

/**
 * The content ref key the Go client uses for a descriptor's ingest (remotes.MakeRefKey):
 * `manifest-…`, `index-…`, `layer-…`, `config-…`, or `unknown-…`, with `<refname>@` in front
 * of the digest when the descriptor carries an OCI ref name annotation.
 */
export function refKey(desc: { mediaType: string; digest: string; annotations?: Record<string, string> }): string {
  let key = desc.digest;
  const name = desc.annotations?.[Annotation.refName];
  if (name !== undefined) key = `${name}@${desc.digest}`;
  const mt = desc.mediaType;
  if (isManifestType(mt)) return `manifest-${key}`;
  if (isIndexType(mt)) return `index-${key}`;
  if (isLayerType(mt)) return `layer-${key}`;
  if (isKnownConfig(mt)) return `config-${key}`;
  return `unknown-${key}`;
}
