/**
 * Image conversion, as containerd's images/converter with its default index converter:
 * `ctr images convert [--uncompress] [--oci] [--platform P | --all-platforms] SRC DST`.
 *
 * The image graph is rewritten bottom-up: a layer may be replaced (gzip → plain tar), a
 * manifest or index whose children changed (or whose Docker media type becomes OCI's) is
 * written again as Go would marshal it, with its gc reference labels moved to the new
 * children; index entries for other platforms are dropped. Anything unchanged keeps its
 * digest, so converting an image that needs nothing returns it as it was. Everything runs
 * under a temporary lease, and DST points at the new root when done.
 */
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import {
  ImageLabel,
  MediaType,
  isDockerType,
  isIndexType,
  isLayerType,
  isManifestType,
  type Descriptor,
} from '../../core/images/images.js';
import { isAlreadyExists } from '../../core/errdefs/errdefs.js';
import type { Connection } from '../connection.js';
import { withLease } from '../pull/lease.js';
import { all, type MatchComparer } from '../platforms/index.js';
import { ContentClient } from './content.js';
import { descriptorJSON, goSortedMap, type Index, type Manifest } from './image.js';
import { createImage, deleteImage, getImageRecord, updateImage, type ImageRecord } from './store.js';

export interface ConvertOptions {
  /** Replace gzip layers with their uncompressed tar. */
  uncompress?: boolean;
  /** Turn Docker media types into OCI ones. */
  docker2oci?: boolean;
  /** Index entries to keep (default: every platform). */
  platform?: MatchComparer;
}

const DOCKER_TO_OCI: Readonly<Record<string, string>> = {
  [MediaType.dockerManifestList]: MediaType.ociIndex,
  [MediaType.dockerManifest]: MediaType.ociManifest,
  [MediaType.dockerLayerGzip]: MediaType.ociLayerGzip,
  [MediaType.dockerForeignLayerGzip]: MediaType.ociLayerNonDistributableGzip,
  [MediaType.dockerLayer]: MediaType.ociLayer,
  [MediaType.dockerForeignLayer]: MediaType.ociLayerNonDistributable,
  [MediaType.dockerConfig]: MediaType.ociConfig,
};

/** The plain-tar media type of a compressed layer type (undefined: nothing to uncompress). */
const UNCOMPRESSED: Readonly<Record<string, string>> = {
  [MediaType.dockerLayerGzip]: MediaType.dockerLayer,
  [MediaType.dockerForeignLayerGzip]: MediaType.dockerForeignLayer,
  [MediaType.ociLayerGzip]: MediaType.ociLayer,
  [MediaType.ociLayerNonDistributableGzip]: MediaType.ociLayerNonDistributable,
};

/** Converts image `srcRef` into `dstRef` (which may be the same name) and returns the new record. */
export async function convertImage(conn: Connection, srcRef: string, dstRef: string, opts: ConvertOptions = {}): Promise<ImageRecord> {
  return withLease(conn, async () => {
    const src = await getImageRecord(conn, srcRef);
    const converted = await new Converter(new ContentClient(conn), opts).convert(src.target);
    const dst: ImageRecord = { name: dstRef, labels: src.labels, target: converted ?? src.target };
    if (dstRef === srcRef) return updateImage(conn, dst);
    await deleteImage(conn, dstRef).catch(() => undefined);
    return createImage(conn, dst);
  });
}

class Converter {
  /** One conversion per digest, shared by every parent that refers to it. */
  private readonly inflight = new Map<string, Promise<Descriptor | undefined>>();
  private readonly platform: MatchComparer;

  constructor(private readonly cs: ContentClient, private readonly opts: ConvertOptions) {
    this.platform = opts.platform ?? all;
  }

  /** The replacement of `desc`, or undefined when it stays as it is. */
  async convert(desc: Descriptor): Promise<Descriptor | undefined> {
    const key = `${desc.mediaType} ${desc.digest}`;
    let p = this.inflight.get(key);
    if (!p) {
      p = this.convertOnce(desc);
      this.inflight.set(key, p);
    }
    let out = await p;
    if (isDockerType(desc.mediaType)) {
      if (this.opts.docker2oci) {
        out = { ...(out ?? desc) };
        out.mediaType = DOCKER_TO_OCI[out.mediaType] ?? out.mediaType;
      } else if (out?.annotations ?? desc.annotations) {
        // Docker's formats have no annotations.
        out = { ...(out ?? desc) };
        delete out.annotations;
      }
    }
    return out;
  }

  private convertOnce(desc: Descriptor): Promise<Descriptor | undefined> {
    if (isLayerType(desc.mediaType)) return this.opts.uncompress ? this.uncompressLayer(desc) : Promise.resolve(undefined);
    if (isManifestType(desc.mediaType)) return this.convertManifest(desc);
    if (isIndexType(desc.mediaType)) return this.convertIndex(desc);
    // A config's bytes would change only with its diff ids, which uncompressing keeps; its
    // media type is the caller's business (convert).
    return Promise.resolve(undefined);
  }

  /** Gives a document its OCI media type in place of Docker's, when asked; true when it changed. */
  private toOciMediaType(doc: { mediaType?: string }): boolean {
    if (!doc.mediaType || !isDockerType(doc.mediaType) || !this.opts.docker2oci) return false;
    doc.mediaType = DOCKER_TO_OCI[doc.mediaType] ?? doc.mediaType;
    return true;
  }

  private async convertManifest(desc: Descriptor): Promise<Descriptor | undefined> {
    const [manifest, labels] = await this.readDocument<Manifest>(desc);
    let modified = this.toOciMediaType(manifest);
    const layers = await Promise.all(manifest.layers.map((l) => this.convert(l)));
    layers.forEach((n, i) => {
      if (!n) return;
      clearGcLabels(labels, manifest.layers[i]!.digest);
      labels[`${ImageLabel.gcRefContentLayerPrefix}${i}`] = n.digest;
      manifest.layers[i] = n;
      modified = true;
    });
    const config = await this.convert(manifest.config);
    if (config) {
      clearGcLabels(labels, manifest.config.digest);
      labels[ImageLabel.gcRefContentConfig] = config.digest;
      manifest.config = config;
      modified = true;
    }
    if (!modified) return undefined;
    const doc: Record<string, unknown> = { schemaVersion: manifest.schemaVersion };
    if (manifest.mediaType) doc.mediaType = manifest.mediaType;
    doc.config = descriptorJSON(manifest.config);
    doc.layers = manifest.layers.map(descriptorJSON);
    if (manifest.annotations && Object.keys(manifest.annotations).length) doc.annotations = goSortedMap(manifest.annotations);
    return this.writeDocument(desc, doc, labels);
  }

  private async convertIndex(desc: Descriptor): Promise<Descriptor | undefined> {
    const [index, labels] = await this.readDocument<Index>(desc);
    let modified = this.toOciMediaType(index);
    const kept: Descriptor[] = [];
    const results = await Promise.all(index.manifests.map(async (m) => {
      if (m.platform && !this.platform.match(m.platform)) return 'drop' as const;
      return this.convert(m);
    }));
    results.forEach((n, i) => {
      const m = index.manifests[i]!;
      if (n === 'drop') {
        clearGcLabels(labels, m.digest);
        modified = true;
        return;
      }
      if (n) {
        clearGcLabels(labels, m.digest);
        labels[`${ImageLabel.gcRefContentManifestPrefix}${i}`] = n.digest;
        modified = true;
      }
      kept.push(n ?? m);
    });
    if (!modified) return undefined;
    const doc: Record<string, unknown> = { schemaVersion: index.schemaVersion };
    if (index.mediaType) doc.mediaType = index.mediaType;
    doc.manifests = kept.map(descriptorJSON);
    if (index.annotations && Object.keys(index.annotations).length) doc.annotations = goSortedMap(index.annotations);
    return this.writeDocument(desc, doc, labels);
  }

  /** A gzip layer decompressed into a new blob that keeps the old one's labels but `uncompressed`. */
  private async uncompressLayer(desc: Descriptor): Promise<Descriptor | undefined> {
    const mediaType = UNCOMPRESSED[desc.mediaType];
    if (!mediaType) return undefined;
    const info = await this.cs.info(desc.digest);
    const labels = { ...info.labels };
    delete labels[ImageLabel.uncompressed];
    const w = await this.cs.writer({ ref: `convert-uncompress-from-${desc.digest}` });
    const hash = createHash('sha256');
    let size = 0;
    try {
      // An interrupted earlier conversion may have left bytes under this ref.
      if (w.status.offset > 0) w.truncate();
      await pipeline(this.cs.readStream(desc.digest), createGunzip(), async (chunks: AsyncIterable<Buffer>) => {
        for await (const c of chunks) {
          hash.update(c);
          size += c.length;
          await w.write(c);
        }
      });
      const digest = `sha256:${hash.digest('hex')}`;
      try {
        await w.commit(size, digest, labels);
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
      }
      return { ...desc, mediaType, digest, size };
    } finally {
      w.close();
    }
  }

  private async readDocument<T>(desc: Descriptor): Promise<[T, Record<string, string>]> {
    const [info, doc] = await Promise.all([this.cs.info(desc.digest), this.cs.readJSON<T>(desc)]);
    return [doc, { ...info.labels }];
  }

  /** Writes `doc` as Go's encoding/json would (no spaces, HTML characters escaped). */
  private async writeDocument(old: Descriptor, doc: unknown, labels: Record<string, string>): Promise<Descriptor> {
    const bytes = Buffer.from(JSON.stringify(doc).replace(/[<>&]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`));
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    await this.cs.writeBlob(`converter-write-json-${digest}`, bytes, { digest, size: bytes.length }, labels);
    return { ...old, digest, size: bytes.length };
  }
}

/** Drops every gc content reference to `digest`. */
function clearGcLabels(labels: Record<string, string>, digest: string): void {
  for (const [k, v] of Object.entries(labels)) {
    if (v === digest && k.startsWith(ImageLabel.gcRefContentPrefix)) delete labels[k];
  }
}
