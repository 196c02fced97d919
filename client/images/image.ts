/**
 * Reading images out of content, with containerd's semantics (images/image.go): children of a
 * manifest or index, the manifest for a platform, the config and its diff ids, the platforms
 * an image offers, what is present locally (check) and its size.
 */
import { FailedPreconditionError, NotFoundError, isNotFound } from '../../core/errdefs/errdefs.js';
import {
  Annotation,
  MediaType,
  chainID,
  isIndexType,
  isKnownConfig,
  isLayerType,
  isManifestType,
  type Descriptor,
} from '../../core/images/images.js';
import { normalize, sortByPreference, type MatchComparer, type Platform } from '../platforms/index.js';
import type { ContentClient } from './content.js';

export interface Manifest {
  schemaVersion: number;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface Index {
  schemaVersion: number;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

/** The parts of an OCI image config berth reads. */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  variant?: string;
  config?: {
    User?: string;
    Env?: string[];
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    WorkingDir?: string;
    Labels?: Record<string, string>;
    StopSignal?: string;
    ExposedPorts?: Record<string, unknown>;
    Volumes?: Record<string, unknown>;
  };
  rootfs?: { type?: string; diff_ids?: string[] };
  history?: unknown[];
  created?: string;
}

/** Anything that can read blobs: a ContentClient, or a local store in tests. */
export type BlobReader = Pick<ContentClient, 'readBlob'> & Partial<Pick<ContentClient, 'stat'>>;

/** Refuses documents whose shape contradicts their descriptor's media type (schema 1 too). */
export function validateMediaType(bytes: Buffer, mt: string): void {
  let doc: { mediaType?: unknown; config?: unknown; layers?: unknown; manifests?: unknown; fsLayers?: unknown };
  try {
    doc = JSON.parse(bytes.toString('utf8')) as typeof doc;
  } catch (err) {
    throw new FailedPreconditionError(`invalid JSON in ${mt} document: ${(err as Error).message}`);
  }
  if (Array.isArray(doc.fsLayers) && doc.fsLayers.length) throw new FailedPreconditionError('media-type: schema 1 not supported');
  const nonEmpty = (v: unknown) => v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0);
  if (isManifestType(mt)) {
    if (nonEmpty(doc.manifests) || doc.mediaType === MediaType.dockerManifestList || doc.mediaType === MediaType.ociIndex) {
      throw new FailedPreconditionError(`media-type: expected manifest but found index (${mt})`);
    }
  } else if (isIndexType(mt)) {
    if (nonEmpty(doc.config) || nonEmpty(doc.layers) || doc.mediaType === MediaType.dockerManifest || doc.mediaType === MediaType.ociManifest) {
      throw new FailedPreconditionError(`media-type: expected index but found manifest (${mt})`);
    }
  }
}

export async function readManifest(cs: BlobReader, desc: Descriptor): Promise<Manifest> {
  const bytes = await cs.readBlob(desc);
  validateMediaType(bytes, desc.mediaType);
  const m = JSON.parse(bytes.toString('utf8')) as Manifest;
  m.layers ??= [];
  return m;
}

export async function readIndex(cs: BlobReader, desc: Descriptor): Promise<Index> {
  const bytes = await cs.readBlob(desc);
  validateMediaType(bytes, desc.mediaType);
  const i = JSON.parse(bytes.toString('utf8')) as Index;
  i.manifests ??= [];
  return i;
}

export async function readConfig(cs: BlobReader, desc: Descriptor): Promise<ImageConfig> {
  return JSON.parse((await cs.readBlob(desc)).toString('utf8')) as ImageConfig;
}

/** Children of a manifest (config, layers) or an index (manifests); none for leaves. */
export async function children(cs: BlobReader, desc: Descriptor): Promise<Descriptor[]> {
  if (isManifestType(desc.mediaType)) {
    const m = await readManifest(cs, desc);
    return [m.config, ...m.layers];
  }
  if (isIndexType(desc.mediaType)) return (await readIndex(cs, desc)).manifests;
  return [];
}

/** The platform of an image config, normalised (variant included when the config has one). */
export function configPlatform(c: ImageConfig): Platform {
  return normalize({ os: c.os ?? '', architecture: c.architecture ?? '', ...(c.variant ? { variant: c.variant } : {}) });
}

export interface ResolvedManifest {
  desc: Descriptor;
  manifest: Manifest;
}

/**
 * The manifest of `target` for `platform`: the target itself when it is a manifest, else the
 * best match among an index's entries (entries without a platform are judged by their config).
 * NOT_FOUND "no match for platform in manifest …" when an index has nothing suitable.
 */
export async function resolveManifest(cs: BlobReader, target: Descriptor, platform?: MatchComparer): Promise<ResolvedManifest> {
  let wasIndex = false;
  const found: ResolvedManifest[] = [];
  const walk = async (descs: Descriptor[]): Promise<void> => {
    for (const desc of descs) {
      if (isManifestType(desc.mediaType)) {
        const manifest = await readManifest(cs, desc);
        if (desc.digest !== target.digest && platform) {
          if (desc.platform && !platform.match(desc.platform)) continue;
          if (!desc.platform) {
            const cfg = await readConfig(cs, manifest.config);
            if (!platform.match(normalize({ os: cfg.os ?? '', architecture: cfg.architecture ?? '' }))) continue;
          }
        }
        found.push({ desc, manifest });
      } else if (isIndexType(desc.mediaType)) {
        const idx = await readIndex(cs, desc);
        if (!platform) {
          await walk(idx.manifests);
          continue;
        }
        const matching = sortByPreference(idx.manifests.filter((d) => !d.platform || platform.match(d.platform)), platform);
        wasIndex = true;
        await walk(matching.slice(0, 1));
      } else {
        throw new NotFoundError(`unexpected media type ${desc.mediaType} for ${desc.digest}`);
      }
      if (found.length) return;
    }
  };
  await walk([target]);
  if (!found.length) {
    if (wasIndex) throw new NotFoundError(`no match for platform in manifest ${target.digest}`);
    throw new NotFoundError(`manifest ${target.digest}`);
  }
  return found[0]!;
}

/** The diff ids of a config blob. */
export async function rootFS(cs: BlobReader, configDesc: Descriptor): Promise<string[]> {
  return (await readConfig(cs, configDesc)).rootfs?.diff_ids ?? [];
}

/**
 * Every platform `target` offers: platforms of index entries, and for manifests without one,
 * the config's os/architecture.
 */
export async function platformsOf(cs: BlobReader, target: Descriptor): Promise<Platform[]> {
  const out: Platform[] = [];
  const walk = async (desc: Descriptor): Promise<void> => {
    if (desc.platform) {
      out.push(desc.platform);
      return;
    }
    if (isKnownConfig(desc.mediaType) && (desc.mediaType === MediaType.ociConfig || desc.mediaType === MediaType.dockerConfig)) {
      const c = await readConfig(cs, desc);
      out.push(normalize({ os: c.os ?? '', architecture: c.architecture ?? '' }));
      return;
    }
    for (const ch of await children(cs, desc)) await walk(ch);
  };
  await walk(target);
  return out;
}

export interface CheckResult {
  /** The manifest for the platform could be read. */
  available: boolean;
  required: Descriptor[];
  present: Descriptor[];
  missing: Descriptor[];
}

/** What of the platform's config and layers is present locally (ctr images check). */
export async function check(cs: BlobReader & Pick<ContentClient, 'stat'>, target: Descriptor, platform: MatchComparer): Promise<CheckResult> {
  let m: ResolvedManifest;
  try {
    m = await resolveManifest(cs, target, platform);
  } catch (err) {
    if (isNotFound(err)) return { available: false, required: [target], present: [], missing: [target] };
    throw new Error(`failed to check image ${target.digest}: ${(err as Error).message}`, { cause: err });
  }
  const required = [m.manifest.config, ...m.manifest.layers];
  const present: Descriptor[] = [];
  const missing: Descriptor[] = [];
  const stats = await Promise.all(required.map((d) => cs.stat(d.digest)));
  required.forEach((d, i) => (stats[i] ? present : missing).push(d));
  return { available: true, required, present, missing };
}

/** Bytes of the target, the platform's manifest, its config and layers (ctr's SIZE column). */
export async function imageSize(cs: BlobReader, target: Descriptor, platform: MatchComparer): Promise<number> {
  let size = 0;
  const walk = async (desc: Descriptor): Promise<void> => {
    if (desc.size < 0) throw new FailedPreconditionError(`invalid size ${desc.size} in ${desc.digest} (${desc.mediaType})`);
    size += desc.size;
    let ch = await children(cs, desc);
    ch = ch.filter((d) => !d.platform || platform.match(d.platform));
    if (isIndexType(desc.mediaType)) {
      ch = sortByPreference(ch, platform);
      if (ch.length === 0) throw new NotFoundError('no match for platform in manifest');
      ch = ch.slice(0, 1);
    }
    for (const c of ch) await walk(c);
  };
  await walk(target);
  return size;
}

/** The layers of a manifest with their diff ids (for unpacking). */
export interface Layer {
  blob: Descriptor;
  diffID: string;
}

export interface ImageContents {
  manifestDesc: Descriptor;
  manifest: Manifest;
  configDesc: Descriptor;
  config: ImageConfig;
  diffIDs: string[];
  layers: Layer[];
  /** Chain id of all layers: the snapshot name of the unpacked image. */
  chainID: string;
}

/** Reads manifest, config and layers of `target` for `platform`. */
export async function imageContents(cs: BlobReader, target: Descriptor, platform?: MatchComparer): Promise<ImageContents> {
  const { desc, manifest } = await resolveManifest(cs, target, platform);
  const config = await readConfig(cs, manifest.config);
  const diffIDs = config.rootfs?.diff_ids ?? [];
  const layerDescs = manifest.layers.filter((l) => isLayerType(l.mediaType));
  if (diffIDs.length !== layerDescs.length) {
    throw new FailedPreconditionError(`mismatched image rootfs and manifest layers: ${diffIDs.length} diff ids, ${layerDescs.length} layers`);
  }
  return {
    manifestDesc: desc,
    manifest,
    configDesc: manifest.config,
    config,
    diffIDs,
    layers: layerDescs.map((blob, i) => ({ blob, diffID: diffIDs[i]! })),
    chainID: chainID(diffIDs),
  };
}

/** The image name an archive/index entry carries (containerd's annotation first, then the OCI ref name). */
export function annotatedName(annotations: Record<string, string> | undefined, ociCleanup?: (name: string) => string): string {
  const name = annotations?.[Annotation.imageName];
  if (name) return name;
  const ref = annotations?.[Annotation.refName];
  if (ref) return ociCleanup ? ociCleanup(ref) : ref;
  return '';
}

/** A string map with its keys in the order Go marshals a map: sorted, so equal documents get equal digests. */
export function goSortedMap(m: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(m).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Descriptor JSON with Go's field order (mediaType, digest, size, urls, annotations, platform). */
export function descriptorJSON(d: Descriptor): Record<string, unknown> {
  const out: Record<string, unknown> = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (d.urls?.length) out.urls = d.urls;
  if (d.annotations && Object.keys(d.annotations).length) out.annotations = goSortedMap(d.annotations);
  if (d.platform) {
    const p: Record<string, unknown> = { architecture: d.platform.architecture, os: d.platform.os };
    if (d.platform['os.version']) p['os.version'] = d.platform['os.version'];
    if (d.platform['os.features']?.length) p['os.features'] = d.platform['os.features'];
    if (d.platform.variant) p.variant = d.platform.variant;
    out.platform = p;
  }
  return out;
}
