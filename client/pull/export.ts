/**
 * Exporting images as an OCI archive, as containerd's images/archive exporter: `oci-layout`,
 * `index.json` (one entry per image, annotated with io.containerd.image.name and
 * org.opencontainers.image.ref.name), every blob under blobs/<alg>/<hex>, and a Docker
 * `manifest.json` for the chosen platform (unless skipped). For an index, manifests of other
 * platforms are left out unless allPlatforms is set, so blobs a single-platform pull never
 * fetched are not needed. Blobs stream from the daemon straight into the tar, verified on the way.
 */
import { createHash } from 'node:crypto';
import type { Writable } from 'node:stream';
import { Header } from 'tar';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from '../../core/errdefs/errdefs.js';
import { Annotation, isIndexType, isManifestType, isNonDistributable, type Descriptor } from '../../core/images/images.js';
import type { Connection } from '../connection.js';
import { ContentClient } from '../images/content.js';
import { children, descriptorJSON, type Index, type Manifest } from '../images/image.js';
import { getImageRecord } from '../images/store.js';
import { defaultStrict, ordered, parse, sortByPreference, type MatchComparer } from '../platforms/index.js';
import { familiarString, parseNormalizedNamed, tagNameOnly } from '../reference/reference.js';
import { ociReferenceName } from './import.js';

export interface ExportOptions {
  /** Platforms to export (default: this host's, exactly). */
  platforms?: string[];
  allPlatforms?: boolean;
  /** Leave out the Docker manifest.json. */
  skipManifestJson?: boolean;
  /** Leave out non-distributable (foreign) layers. */
  skipNonDistributable?: boolean;
  signal?: AbortSignal;
}

interface TarRecord {
  name: string;
  mode: number;
  size: number;
  type: 'File' | 'Directory';
  /** Writes the body; returns the bytes written. */
  copy?: (out: BlobSink) => Promise<number>;
}

type BlobSink = (chunk: Buffer) => Promise<void>;

/** Adds the name annotations an exported index entry carries. */
function withName(desc: Descriptor, name: string): Descriptor {
  return { ...desc, annotations: { ...(desc.annotations ?? {}), [Annotation.imageName]: name, [Annotation.refName]: ociReferenceName(name) } };
}

function blobPath(digest: string): string {
  const i = digest.indexOf(':');
  if (i <= 0) throw new InvalidArgumentError(`invalid digest ${JSON.stringify(digest)}`);
  return `blobs/${digest.slice(0, i)}/${digest.slice(i + 1)}`;
}

/** Writes the OCI archive of `names` to `out` (not ended). */
export async function exportImages(conn: Connection, names: readonly string[], out: Writable, opts: ExportOptions = {}): Promise<void> {
  if (!names.length) throw new InvalidArgumentError('please provide an image reference to export');
  const cs = new ContentClient(conn);
  const platform: MatchComparer = opts.platforms?.length ? ordered(...opts.platforms.map(parse)) : defaultStrict();
  const keep = (d: Descriptor) => !(opts.skipNonDistributable && isNonDistributable(d.mediaType));

  const targets: Descriptor[] = [];
  for (const name of names) {
    const img = await getImageRecord(conn, name);
    targets.push(withName(img.target, name));
  }

  const records: TarRecord[] = [];
  const algorithms = new Set<string>();
  const blobRecord = (d: Descriptor): TarRecord | undefined => {
    if (!keep(d)) return undefined;
    algorithms.add(d.digest.slice(0, d.digest.indexOf(':')));
    return {
      name: blobPath(d.digest),
      mode: 0o444,
      size: d.size,
      type: 'File',
      copy: async (sink) => {
        const alg = d.digest.slice(0, d.digest.indexOf(':'));
        const hash = createHash(alg);
        let n = 0;
        for await (const c of cs.read(d.digest, 0, 0, opts.signal)) {
          hash.update(c);
          n += c.length;
          await sink(c);
        }
        const got = `${alg}:${hash.digest('hex')}`;
        if (got !== d.digest) throw new FailedPreconditionError(`unexpected digest ${got} copied`);
        return n;
      },
    };
  };
  const walkRecords = async (desc: Descriptor): Promise<void> => {
    const r = blobRecord(desc);
    if (r) records.push(r);
    for (const c of await children(cs, desc)) await walkRecords(c);
  };

  // Docker manifest.json entries: manifest digest → names.
  const dockerManifests = new Map<string, { manifest: Descriptor; names: string[] }>();
  const resolvedIndex = new Map<string, string>();
  for (const desc of targets) {
    const name = desc.annotations?.[Annotation.imageName] ?? '';
    if (isManifestType(desc.mediaType)) {
      let entry = dockerManifests.get(desc.digest);
      if (!entry) {
        await walkRecords(desc);
        entry = { manifest: desc, names: [] };
        dockerManifests.set(desc.digest, entry);
      }
      if (name && !opts.skipManifestJson) entry.names.push(name);
    } else if (isIndexType(desc.mediaType)) {
      let chosen = resolvedIndex.get(desc.digest);
      if (chosen === undefined) {
        const r = blobRecord(desc);
        if (r) records.push(r);
        const idx = await cs.readJSON<Index>(desc);
        const matching: Descriptor[] = [];
        for (const m of idx.manifests ?? []) {
          if (!m.platform || platform.match(m.platform)) matching.push(m);
          else if (!opts.allPlatforms) continue;
          await walkRecords(m);
        }
        chosen = '';
        if (!opts.skipManifestJson) {
          if (matching.length) {
            const best = sortByPreference(matching, platform)[0]!;
            chosen = best.digest;
            if (!dockerManifests.has(best.digest)) dockerManifests.set(best.digest, { manifest: best, names: [] });
          } else {
            throw new NotFoundError('no manifest found for platform');
          }
        }
        resolvedIndex.set(desc.digest, chosen);
      }
      if (chosen && name) dockerManifests.get(chosen)!.names.push(name);
    } else {
      throw new InvalidArgumentError('only manifests may be exported');
    }
  }

  const text = (name: string, mode: number, body: string): TarRecord => {
    const bytes = Buffer.from(body);
    return { name, mode, size: bytes.length, type: 'File', copy: async (sink) => (await sink(bytes), bytes.length) };
  };
  records.push(text('oci-layout', 0o444, JSON.stringify({ imageLayoutVersion: '1.0.0' })));
  records.push(text('index.json', 0o644, JSON.stringify({ schemaVersion: 2, manifests: targets.map(descriptorJSON) })));
  if (dockerManifests.size) {
    const entries = [];
    for (const { manifest, names: ns } of dockerManifests.values()) {
      const m = await cs.readJSON<Manifest>(manifest);
      entries.push({
        Config: blobPath(m.config.digest),
        RepoTags: ns.length ? ns.map((n) => familiarString(tagNameOnly(parseNormalizedNamed(n)))) : null,
        Layers: (m.layers ?? []).map((l) => blobPath(l.digest)),
      });
    }
    records.push(text('manifest.json', 0o644, JSON.stringify(entries)));
  }
  if (algorithms.size) {
    records.push({ name: 'blobs/', mode: 0o755, size: 0, type: 'Directory' });
    for (const alg of algorithms) records.push({ name: `blobs/${alg}/`, mode: 0o755, size: 0, type: 'Directory' });
  }

  records.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const write = (chunk: Buffer): Promise<void> =>
    new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      out.once('error', onError);
      if (out.write(chunk)) {
        out.off('error', onError);
        resolve();
      } else {
        out.once('drain', () => {
          out.off('error', onError);
          resolve();
        });
      }
    });
  let last = '';
  for (const r of records) {
    if (r.name === last) continue;
    last = r.name;
    const h = new Header({ path: r.name, mode: r.mode, size: r.size, type: r.type, mtime: new Date(0), uid: 0, gid: 0 });
    const block = Buffer.alloc(512);
    h.encode(block, 0);
    await write(block);
    if (r.copy) {
      const n = await r.copy(write);
      if (n !== r.size) throw new FailedPreconditionError(`unexpected copy size for ${r.name}`);
      const pad = (512 - (n % 512)) % 512;
      if (pad) await write(Buffer.alloc(pad));
    }
  }
  await write(Buffer.alloc(1024));
}
