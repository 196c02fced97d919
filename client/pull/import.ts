/**
 * Importing image archives, as containerd's images/archive importer and client.Import:
 *
 *  - the tar is read as a stream; every regular file becomes a blob in content (ref
 *    `tar-<name>`), written while it is read — nothing is buffered but the small JSON files;
 *    files named blobs/<alg>/<hex> are opened with that expected digest, so blobs already in
 *    the store are skipped without sending their data;
 *  - OCI archives (oci-layout + index.json): index.json is the root;
 *  - Docker archives (manifest.json with Config/RepoTags/Layers): a Docker schema 2 manifest
 *    is built per image (plain layers become `…rootfs.diff.tar`, gzip ones `….tar.gzip`; with
 *    compressBlobs, plain layers are gzip-compressed into new blobs), and an index naming them
 *    by their RepoTags;
 *  - images are created from the index entries' `io.containerd.image.name` annotation, or the
 *    OCI ref name passed through the name translator (--base-name), plus optional digest
 *    names and an index name; the walked graph gets gc labels;
 *  - then (unless disabled) each image is unpacked for the platform.
 */
import { createHash } from 'node:crypto';
import { posix as path } from 'node:path';
import { Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import type { ReadEntry } from 'tar';
import { InvalidArgumentError, NotFoundError, isAlreadyExists } from '../../core/errdefs/errdefs.js';
import {
  Annotation,
  childrenGCLabels,
  ImageLabel,
  isIndexType,
  isManifestType,
  MediaType,
  type Descriptor,
} from '../../core/images/images.js';
import type { Connection } from '../connection.js';
import { ContentClient } from '../images/content.js';
import { annotatedName, children, descriptorJSON, imageContents, platformsOf } from '../images/image.js';
import { upsertImageTarget, type ImageRecord } from '../images/store.js';
import { all, defaultSpec, format, only, onlyStrict, parse, type MatchComparer, type Platform } from '../platforms/index.js';
import { parseDockerRef } from '../reference/reference.js';
import { parseSpec } from '../reference/spec.js';
import { withLease } from './lease.js';
import { resolveSnapshotter, unpackLayers } from './unpack.js';

export interface ImportOptions {
  /**
   * Base name for OCI ref names: with a base, only refs under it are imported; without one,
   * bare tags become `import-<YYYY-MM-DD>:<tag>` (ctr's behaviour).
   */
  baseName?: string;
  /** Also create `<base>@<digest>` images. */
  digests?: boolean;
  /** With `digests`: no digest image for entries that have a name. */
  skipDigestForNamed?: boolean;
  /** Keep the index itself as an image of this name. */
  indexName?: string;
  allPlatforms?: boolean;
  /** Only this platform (exact match). */
  platform?: string;
  /** Gzip-compress uncompressed Docker layers into new blobs. */
  compressBlobs?: boolean;
  /** Unpack the images (default true). */
  unpack?: boolean;
  snapshotter?: string;
  /** Called before and after each image's unpack (for "unpacking NAME (DIGEST)...done"). */
  onUnpack?: (image: ImageRecord, phase: 'start' | 'done') => void;
  signal?: AbortSignal;
}

export interface ImportResult {
  images: ImageRecord[];
  /** The index descriptor the archive resolved to. */
  index: Descriptor;
}

/** containerd's refTranslator: bare tags get `<base>:`; with `filter`, refs outside the base are dropped. */
export function refTranslator(base: string, filter: boolean): (ref: string) => string {
  return (ref) => {
    if (/[/:@]/.test(ref)) {
      if (filter && !isImagePrefix(ref, base)) return '';
      return ref;
    }
    return `${base}:${ref}`;
  };
}

function isImagePrefix(s: string, prefix: string): boolean {
  if (!s.startsWith(prefix)) return false;
  if (s.length > prefix.length) return s[prefix.length] === '/' || s[prefix.length] === ':' || s[prefix.length] === '@';
  return true;
}

/** The OCI ref name of a full image name: the reference's object (its tag), else the name. */
export function ociReferenceName(name: string): string {
  try {
    return parseSpec(name).object || name;
  } catch {
    return name;
  }
}

/** The full normalised name of a RepoTags entry ("busybox:latest" → "docker.io/library/busybox:latest"). */
export function normalizeReference(ref: string): string {
  try {
    return parseDockerRef(ref).toString();
  } catch (err) {
    throw new InvalidArgumentError(`normalize image ref ${JSON.stringify(ref)}: ${(err as Error).message}`);
  }
}

const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const JSON_LIMIT = 20 << 20;

interface ArchiveContents {
  ociLayout?: { imageLayoutVersion?: string };
  dockerManifests?: { Config: string; RepoTags?: string[] | null; Layers: string[] }[];
  symlinks: Map<string, string>;
  blobs: Map<string, { digest: string; size: number }>;
}

/** Reads the whole tar stream, storing every regular file as a blob. */
async function ingestArchive(cs: ContentClient, input: Readable, signal?: AbortSignal): Promise<ArchiveContents> {
  const { Parser } = await import('tar');
  const out: ArchiveContents = { symlinks: new Map(), blobs: new Map() };
  const parser = new Parser({ strict: false });
  let stop: () => void = () => {};
  const stopped = new Promise<void>((r) => (stop = r));
  const queue: ReadEntry[] = [];
  let ended = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const poke = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  parser.on('entry', (e: ReadEntry) => {
    queue.push(e);
    poke();
  });
  parser.on('end', () => {
    ended = true;
    poke();
  });
  parser.on('error', (err: Error) => {
    failure ??= err;
    poke();
    stop();
  });
  parser.on('warn', (code: string, msg: string | Error) => {
    const text = msg instanceof Error ? msg.message : String(msg);
    // Nothing but end-of-archive blocks: an empty archive (reported as "unrecognized image format" below).
    if (code === 'TAR_BAD_ARCHIVE' && text === 'Unrecognized archive format') return;
    if (code === 'TAR_ENTRY_INVALID' || code === 'TAR_BAD_ARCHIVE') {
      failure ??= new InvalidArgumentError(`invalid tar archive: ${msg instanceof Error ? msg.message : msg}`);
      poke();
      stop();
    }
  });

  const worker = (async () => {
    for (;;) {
      if (failure !== undefined) return;
      const e = queue.shift();
      if (!e) {
        if (ended) return;
        await new Promise<void>((r) => (wake = r));
        continue;
      }
      try {
        await handleEntry(cs, e, out, signal);
      } catch (err) {
        failure ??= err;
        e.resume();
        stop();
        return;
      }
    }
  })();

  const pump = (async () => {
    try {
      for await (const chunk of input) {
        if (failure !== undefined) break;
        if (!parser.write(chunk as Buffer)) {
          await Promise.race([new Promise((r) => parser.once('drain', r)), stopped]);
        }
      }
      if (failure === undefined) parser.end();
    } catch (err) {
      failure ??= err;
    }
    if (failure !== undefined) {
      ended = true;
      poke();
    }
  })();
  await pump;
  await worker;
  if (failure !== undefined) {
    input.destroy();
    throw failure;
  }
  return out;
}

async function readJSONEntry<T>(e: ReadEntry): Promise<T> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of e as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > JSON_LIMIT) throw new InvalidArgumentError(`${e.path}: JSON file larger than ${JSON_LIMIT} bytes`);
    parts.push(c);
  }
  return JSON.parse(Buffer.concat(parts).toString('utf8')) as T;
}

async function handleEntry(cs: ContentClient, e: ReadEntry, out: ArchiveContents, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted();
  const name = path.normalize(e.path).replace(/^(\.\/)+/, '').replace(/\/+$/, '');
  if (e.type === 'SymbolicLink') {
    out.symlinks.set(name, path.join(path.dirname(name), e.linkpath ?? ''));
    e.resume();
    return;
  }
  if (e.type !== 'File' && e.type !== 'OldFile' && e.type !== 'ContiguousFile') {
    e.resume();
    return;
  }
  if (name === 'oci-layout') {
    out.ociLayout = await readJSONEntry(e);
    return;
  }
  if (name === 'manifest.json') {
    out.dockerManifests = await readJSONEntry(e);
    return;
  }
  const size = e.size;
  // blobs/<alg>/<hex>: the name is the digest, so present blobs need not be sent again.
  const m = /^blobs\/(sha256|sha384|sha512)\/([a-f0-9]+)$/.exec(name);
  const expected = m ? `${m[1]}:${m[2]}` : '';
  let w;
  try {
    w = await cs.writer({ ref: `tar-${name}`, total: size, expected, signal });
  } catch (err) {
    if (!isAlreadyExists(err)) throw err;
    e.resume();
    out.blobs.set(name, { digest: expected, size });
    return;
  }
  try {
    const hash = createHash('sha256');
    if (w.status.offset > 0) w.truncate();
    for await (const chunk of e as AsyncIterable<Buffer>) {
      hash.update(chunk);
      await w.write(chunk);
    }
    const digest = expected && !expected.startsWith('sha256:') ? expected : `sha256:${hash.digest('hex')}`;
    try {
      await w.commit(size, digest);
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
    out.blobs.set(name, { digest, size });
  } finally {
    w.close();
  }
}

/** Which media type a Docker layer gets: by its bytes (gzip or plain), or a compressed twin already in the store. */
async function resolveDockerLayers(cs: ContentClient, files: string[], blobs: ArchiveContents['blobs'], compress: boolean): Promise<Descriptor[]> {
  const layers: Descriptor[] = [];
  for (const f of files) {
    const b = blobs.get(path.normalize(f).replace(/^(\.\/)+/, ''));
    if (!b) throw new NotFoundError(`layer ${JSON.stringify(f)} not found`);
    layers.push({ mediaType: '', digest: b.digest, size: b.size });
  }
  // A compressed blob whose uncompressed label names this layer (e.g. pulled before) is preferred.
  const wanted = new Map(layers.map((l, i) => [l.digest, i]));
  if (layers.length) {
    const filters = layers.map((l) => `labels."${ImageLabel.uncompressed}"==${l.digest}`);
    for await (const info of cs.list(filters)) {
      const i = wanted.get(info.labels[ImageLabel.uncompressed] ?? '');
      if (i === undefined || layers[i]!.mediaType) continue;
      layers[i] = { mediaType: await detectLayerType(cs, info.digest, info.size), digest: info.digest, size: info.size };
    }
  }
  for (let i = 0; i < layers.length; i++) {
    const l = layers[i]!;
    if (l.mediaType) continue;
    const type = await detectLayerType(cs, l.digest, l.size);
    if (type === MediaType.dockerLayer && compress) {
      layers[i] = await compressBlob(cs, l);
    } else {
      l.mediaType = type;
    }
  }
  return layers;
}

async function detectLayerType(cs: ContentClient, digest: string, size: number): Promise<string> {
  if (size < 3) return MediaType.dockerLayer;
  let head = Buffer.alloc(0);
  for await (const c of cs.read(digest, 0, Math.min(size, 10))) head = Buffer.concat([head, c]);
  if (head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08) return MediaType.dockerLayerGzip;
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return MediaType.dockerLayerGzip;
  return MediaType.dockerLayer;
}

async function compressBlob(cs: ContentClient, layer: Descriptor): Promise<Descriptor> {
  const ref = `compress-blob-${layer.digest.replace(':', '-')}`;
  const w = await cs.writer({ ref });
  try {
    w.truncate();
    const gz = createGzip();
    const hash = createHash('sha256');
    const feed = (async () => {
      for await (const c of cs.read(layer.digest)) if (!gz.write(c)) await new Promise((r) => gz.once('drain', r));
      gz.end();
    })();
    let size = 0;
    for await (const c of gz as AsyncIterable<Buffer>) {
      hash.update(c);
      size += c.length;
      await w.write(c);
    }
    await feed;
    const digest = `sha256:${hash.digest('hex')}`;
    try {
      await w.commit(size, digest, { [ImageLabel.uncompressed]: layer.digest });
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
    return { mediaType: MediaType.dockerLayerGzip, digest, size };
  } finally {
    w.close();
  }
}

async function writeJSONBlob(cs: ContentClient, doc: unknown, mediaType: string): Promise<Descriptor> {
  const bytes = Buffer.from(JSON.stringify(doc));
  const desc: Descriptor = { mediaType, digest: sha256(bytes), size: bytes.length };
  await cs.writeBlob(`manifest-${desc.digest}`, bytes, desc);
  return desc;
}

/** Stores the archive's blobs and returns the index descriptor (containerd's ImportIndex). */
export async function importIndex(cs: ContentClient, input: Readable, opts: { compressBlobs?: boolean; signal?: AbortSignal } = {}): Promise<Descriptor> {
  const a = await ingestArchive(cs, input, opts.signal);
  if (a.ociLayout?.imageLayoutVersion !== undefined && a.ociLayout.imageLayoutVersion !== '') {
    if (a.ociLayout.imageLayoutVersion !== '1.0.0') throw new Error(`unsupported OCI version ${a.ociLayout.imageLayoutVersion}`);
    const idx = a.blobs.get('index.json');
    if (!idx) throw new Error('missing index.json in OCI layout 1.0.0');
    return { mediaType: MediaType.ociIndex, digest: idx.digest, size: idx.size };
  }
  if (!a.dockerManifests) throw new Error('unrecognized image format');
  for (const [name, target] of a.symlinks) {
    const b = a.blobs.get(target);
    if (!b) throw new Error(`no target for symlink layer from ${JSON.stringify(name)} to ${JSON.stringify(target)}`);
    a.blobs.set(name, b);
  }
  const manifests: Descriptor[] = [];
  for (const m of a.dockerManifests) {
    const cfg = a.blobs.get(path.normalize(m.Config).replace(/^(\.\/)+/, ''));
    if (!cfg) throw new NotFoundError(`image config ${JSON.stringify(m.Config)} not found`);
    const config: Descriptor = { mediaType: MediaType.dockerConfig, digest: cfg.digest, size: cfg.size };
    const layers = await resolveDockerLayers(cs, m.Layers ?? [], a.blobs, !!opts.compressBlobs);
    const desc = await writeJSONBlob(cs, {
      schemaVersion: 2,
      mediaType: MediaType.dockerManifest,
      config: descriptorJSON(config),
      layers: layers.map(descriptorJSON),
    }, MediaType.dockerManifest);
    const ps = await platformsOf(cs, desc);
    if (ps.length) desc.platform = ps[0];
    if (!m.RepoTags?.length) manifests.push(desc);
    for (const tag of m.RepoTags ?? []) {
      const normalized = normalizeReference(tag);
      manifests.push({ ...desc, annotations: { [Annotation.imageName]: normalized, [Annotation.refName]: ociReferenceName(normalized) } });
    }
  }
  return writeJSONBlob(cs, { schemaVersion: 2, manifests: manifests.map(descriptorJSON) }, MediaType.ociIndex);
}

/** Imports an archive (OCI or Docker) read from `input` into the connection's namespace. */
export async function importArchive(conn: Connection, input: Readable, opts: ImportOptions = {}): Promise<ImportResult> {
  const cs = new ContentClient(conn);
  const prefix = opts.baseName || `import-${new Date().toISOString().slice(0, 10)}`;
  const translate = refTranslator(prefix, !!opts.baseName);
  if (opts.skipDigestForNamed && !opts.digests) throw new InvalidArgumentError('--skip-digest-for-named must be specified with --digests option');
  const platform: Platform | undefined = opts.platform ? parse(opts.platform) : undefined;
  const matcher: MatchComparer = opts.allPlatforms ? all : platform ? onlyStrict(platform) : only(defaultSpec());
  return withLease(conn, async () => {
    const index = await importIndex(cs, input, opts);
    const imgs: ImageRecord[] = [];
    if (opts.indexName) imgs.push({ name: opts.indexName, labels: {}, target: index });

    // Walk from the index: name the top-level entries, label what is kept.
    let nonEmpty = false;
    const walk = async (desc: Descriptor): Promise<void> => {
      let kids: Descriptor[];
      if (desc.digest === index.digest) {
        const idx = await cs.readJSON<{ manifests?: Descriptor[] }>(desc);
        kids = idx.manifests ?? [];
        for (const m of kids) {
          const name = annotatedName(m.annotations, translate);
          if (name) imgs.push({ name, labels: {}, target: m });
          if (opts.skipDigestForNamed && name) continue;
          if (opts.digests) imgs.push({ name: `${prefix}@${m.digest}`, labels: {}, target: m });
        }
      } else {
        kids = await children(cs, desc);
      }
      kids = kids.filter((k) => !k.platform || matcher.match(k.platform));
      if (kids.length) {
        nonEmpty = true;
        const labels = childrenGCLabels(kids);
        await cs.update(desc.digest, labels, Object.keys(labels).map((k) => `labels.${k}`));
      }
      for (const k of kids) await walk(k);
    };
    await walk(index);
    if (!nonEmpty) throw new Error('image might be filtered out');

    const out: ImageRecord[] = [];
    for (const img of imgs) out.push(await upsertImageTarget(conn, img));

    if (opts.unpack ?? true) {
      const snapshotter = await resolveSnapshotter(conn, opts.snapshotter);
      const unpackMatcher = platform ? onlyStrict(platform) : only(defaultSpec());
      for (const img of out) {
        opts.onUnpack?.(img, 'start');
        const contents = await imageContents(cs, img.target, unpackMatcher);
        await unpackLayers(conn, contents.configDesc, contents.layers, { snapshotter, signal: opts.signal });
        opts.onUnpack?.(img, 'done');
      }
    }
    return { images: out, index };
  });
}

/** Formats the platform an import unpacks for (for messages). */
export const importPlatform = (opts: Pick<ImportOptions, 'platform'>) => (opts.platform ? format(parse(opts.platform)) : format(defaultSpec()));

export { isIndexType, isManifestType };
