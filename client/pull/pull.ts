/**
 * Pulling an image into a containerd-API daemon, with the content, labels and snapshots the Go
 * client leaves behind (so `ctr images check`, `ctr run` and gc all see a normal pull):
 *
 *  - resolve the reference; fetch the index/manifests the platform matcher accepts, their
 *    configs and layers into content through Content.Write (refs `index-…`, `manifest-…`,
 *    `config-…`, `layer-…`, with total and expected digest); blobs already present are skipped;
 *  - labels: on an index `containerd.io/gc.ref.content.m.<i>`, on a manifest
 *    `…gc.ref.content.config` and `…gc.ref.content.l.<i>`, on every blob
 *    `containerd.io/distribution.source.<host>=<repo>` (given at commit for new blobs);
 *  - layers download in parallel (limited), streamed straight from the registry into the
 *    content writer and verified (size and digest) before commit;
 *  - unpacking starts as soon as the manifest and config are in, and extracts layer i once it
 *    is committed, while later layers are still downloading;
 *  - the image record is created (updated when the name exists);
 *  - all of it under a temporary lease.
 */
import { setMaxListeners } from 'node:events';
import { isAlreadyExists, isNotFound, isUnavailable, NotFoundError, NotImplementedError } from '../../core/errdefs/errdefs.js';
import {
  childrenGCLabels,
  chainID,
  ImageLabel,
  isIndexType,
  isKnownConfig,
  isLayerType,
  isManifestType,
  MediaType,
  refKey,
  type Descriptor,
} from '../../core/images/images.js';
import { validateLabels } from '../../core/metadata/labels.js';
import type { Connection } from '../connection.js';
import { ContentClient } from '../images/content.js';
import { createOrUpdateImage, type ImageRecord } from '../images/store.js';
import { imageContents, platformsOf, validateMediaType, type Index, type Layer, type Manifest } from '../images/image.js';
import { any, all, defaultSpec, format, only, parse, sortByPreference, type MatchComparer, type Platform } from '../platforms/index.js';
import { parseSpec } from '../reference/spec.js';
import { Resolver, type Fetcher, type ResolverOptions } from '../remotes/resolver.js';
import { limit, type Limiter } from '../remotes/limit.js';
import { withLease } from './lease.js';
import { ProgressTracker } from './progress.js';
import { resolveSnapshotter, unpackLayers, type UnpackProgress } from './unpack.js';

export interface PullOptions {
  /** A resolver to use; otherwise one is built from `remote` (plain HTTP, hosts dir, credentials). */
  resolver?: Resolver;
  remote?: ResolverOptions;
  /** Platforms to fetch and unpack ("os/arch[/variant]"); default: this host's. */
  platforms?: string[];
  /** Fetch every platform (and unpack each). */
  allPlatforms?: boolean;
  /**
   * Also fetch the manifests and configs of the other platforms (their layers stay behind),
   * as ctr's `--all-metadata`.
   */
  allMetadata?: boolean;
  /** Fetch only manifests and configs, no layers of any platform (ctr's `content fetch --metadata-only`). */
  metadataOnly?: boolean;
  /** Unpack after (and while) fetching; default true. */
  unpack?: boolean;
  /** Snapshotter for unpacking (default: the namespace's default label, else overlayfs). */
  snapshotter?: string;
  /** Labels of the image record. */
  labels?: Record<string, string>;
  /** Parallel blob downloads (default 3). */
  maxConcurrentDownloads?: number;
  progress?: ProgressTracker;
  onUnpack?: (platform: string, p: UnpackProgress) => void;
  /** Called once every blob is in content (unpacking may still be running). */
  onFetched?: () => void;
  signal?: AbortSignal;
}

export interface UnpackedPlatform {
  platform: string;
  chainID: string;
  snapshotter: string;
}

export interface PullResult {
  image: ImageRecord;
  unpacked: UnpackedPlatform[];
  /** Milliseconds spent fetching, and from the end of the fetch until the last unpack finished. */
  fetchMs: number;
  unpackWaitMs: number;
}

/** `containerd.io/distribution.source.<hostname>` key and repository of a reference (the port is not part of the key). */
export function distributionSource(name: string): { key: string; repo: string } {
  const spec = parseSpec(name);
  const slash = spec.locator.indexOf('/');
  const host = slash < 0 ? spec.locator : spec.locator.slice(0, slash);
  const repo = slash < 0 ? '' : spec.locator.slice(slash + 1);
  let hostname = host;
  if (hostname.startsWith('[')) hostname = hostname.slice(1, hostname.indexOf(']'));
  else if (hostname.includes(':')) hostname = hostname.slice(0, hostname.lastIndexOf(':'));
  return { key: `${ImageLabel.distributionSourcePrefix}${hostname}`, repo };
}

/** Adds `repo` to a comma-separated, sorted, de-duplicated list of repositories. */
export function appendDistributionSource(current: string | undefined, repo: string): string {
  const repos = new Set((current ? current.split(',') : []).filter(Boolean));
  repos.add(repo);
  return [...repos].sort().join(',');
}

interface Scheduled {
  /** The blob is committed (or was present) and, for documents, parsed. */
  stored: Promise<void>;
}

/**
 * One fetch: walks the image graph from the root, writing every accepted blob into content.
 * Documents (index, manifest, config) are kept in memory for the unpacker.
 */
export class FetchSession {
  readonly docs = new Map<string, Buffer>();
  private readonly scheduled = new Map<string, Scheduled>();
  private readonly tasks: Promise<void>[] = [];
  private readonly cs: ContentClient;
  private readonly blobs: Limiter;
  private failure: unknown;
  private readonly abort = new AbortController();

  constructor(
    readonly conn: Connection,
    readonly fetcher: Fetcher,
    readonly source: { key: string; repo: string },
    readonly matcher: MatchComparer,
    readonly tracker: ProgressTracker,
    concurrency: number,
    signal?: AbortSignal,
    /** Follow every manifest of an index, but only the config of those the matcher rejects. */
    readonly allMetadata = false,
  ) {
    this.cs = new ContentClient(conn);
    this.blobs = limit(Math.max(1, concurrency));
    signal?.addEventListener('abort', () => this.abort.abort(signal.reason), { once: true });
    // Every call made for this fetch listens on the signal.
    setMaxListeners(0, this.abort.signal);
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** Starts fetching `desc` (once per digest). */
  schedule(desc: Descriptor): Scheduled {
    const existing = this.scheduled.get(desc.digest);
    if (existing) return existing;
    let start!: () => void;
    const gate = new Promise<void>((r) => (start = r));
    const s: Scheduled = {
      stored: gate.then(() => this.handle(desc, (children) => {
        for (const c of children) this.schedule(c);
      })),
    };
    this.scheduled.set(desc.digest, s);
    s.stored.catch((err) => this.fail(err));
    this.tasks.push(s.stored);
    start();
    return s;
  }

  /** The stored-promise of a scheduled digest; NOT_FOUND when the fetch never reached it. */
  stored(digest: string): Promise<void> {
    const s = this.scheduled.get(digest);
    if (!s) return Promise.reject(new NotFoundError(`content ${digest} was not fetched`));
    return s.stored;
  }

  isScheduled(digest: string): boolean {
    return this.scheduled.has(digest);
  }

  /** Stops the fetch (e.g. because unpacking failed); wait() then rejects with `err`. False when it had failed already. */
  cancel(err: unknown): boolean {
    if (this.failure !== undefined) return false;
    this.fail(err);
    return true;
  }

  private fail(err: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    this.abort.abort(err);
  }

  /** Resolves when every scheduled blob is stored; rejects with the first failure. */
  async wait(): Promise<void> {
    for (let i = 0; i < this.tasks.length; i++) {
      await this.tasks[i]!.catch(() => undefined);
    }
    if (this.failure !== undefined) throw this.failure;
  }

  private async handle(desc: Descriptor, spawn: (children: Descriptor[]) => void): Promise<void> {
    if (desc.mediaType === MediaType.dockerSchema1Manifest) throw new NotImplementedError(`${desc.mediaType} not supported`);
    const key = refKey(desc);
    this.tracker.add(desc);
    if (isManifestType(desc.mediaType) || isIndexType(desc.mediaType)) {
      const bytes = await this.fetchDocument(desc);
      validateMediaType(bytes, desc.mediaType);
      const doc = JSON.parse(bytes.toString('utf8')) as Partial<Manifest & Index>;
      const children: Descriptor[] = isManifestType(desc.mediaType)
        ? [doc.config!, ...(doc.layers ?? [])].filter(Boolean)
        : (doc.manifests ?? []);
      // containerd labels every child, then filters by platform.
      const labels = { ...childrenGCLabels(children), ...this.sourceLabel(undefined) };
      await this.storeDocument(desc, key, bytes, labels, Object.keys(childrenGCLabels(children)));
      this.docs.set(desc.digest, bytes);
      spawn(this.accepted(desc, children));
      return;
    }
    if (isKnownConfig(desc.mediaType) || desc.mediaType === MediaType.dockerLegacyConfig) {
      const bytes = await this.blobs(() => this.fetchDocument(desc));
      await this.storeDocument(desc, key, bytes, this.sourceLabel(undefined), []);
      this.docs.set(desc.digest, bytes);
      return;
    }
    await this.blobs(() => this.fetchLayer(desc, key));
  }

  /** The children of an index or manifest this fetch follows. */
  private accepted(desc: Descriptor, children: Descriptor[]): Descriptor[] {
    const wanted = (p: Descriptor['platform']) => !p || this.matcher.match(p);
    if (isIndexType(desc.mediaType)) return this.allMetadata ? children : children.filter((c) => wanted(c.platform));
    // A manifest reached from an index names its platform there; with allMetadata, one for
    // another platform contributes its config only.
    if (this.allMetadata && !wanted(desc.platform)) return children.filter((c) => isKnownConfig(c.mediaType));
    return children;
  }

  private sourceLabel(current: string | undefined): Record<string, string> {
    if (!this.source.repo) return {};
    const value = appendDistributionSource(current, this.source.repo);
    try {
      validateLabels({ [this.source.key]: value });
    } catch {
      return {};
    }
    return { [this.source.key]: value };
  }

  private async fetchDocument(desc: Descriptor): Promise<Buffer> {
    const job = this.tracker.set(refKey(desc), { status: 'downloading', offset: 0, total: desc.size, startedAt: Date.now() });
    const bytes = await this.fetcher.fetchBytes(desc, { signal: this.signal, maxSize: 64 << 20 });
    job.offset = bytes.length;
    return bytes;
  }

  /** Writes a small blob; when it exists already, merges the labels in instead. */
  private async storeDocument(desc: Descriptor, ref: string, bytes: Buffer, labels: Record<string, string>, gcKeys: string[]): Promise<void> {
    const written = await this.cs.writeBlob(ref, bytes, desc, labels);
    if (written) {
      this.tracker.set(ref, { status: 'done', offset: desc.size });
      return;
    }
    this.tracker.set(ref, { status: 'exists' });
    await this.mergeLabels(desc.digest, labels, gcKeys);
  }

  /** For blobs that were already present: gc labels are set, the distribution source appended. */
  private async mergeLabels(digest: string, labels: Record<string, string>, gcKeys: string[]): Promise<void> {
    const set: Record<string, string> = {};
    for (const k of gcKeys) set[k] = labels[k]!;
    if (this.source.repo) {
      const info = await this.cs.info(digest);
      Object.assign(set, this.sourceLabel(info.labels[this.source.key]));
    }
    if (Object.keys(set).length) await this.cs.setLabels(digest, set);
  }

  private async fetchLayer(desc: Descriptor, ref: string): Promise<void> {
    const job = this.tracker.set(ref, { status: 'waiting', total: desc.size });
    const labels = this.sourceLabel(undefined);
    let w;
    try {
      w = await this.cs.writer({ ref, total: desc.size, expected: desc.digest, signal: this.signal });
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
      job.status = 'exists';
      await this.mergeLabels(desc.digest, labels, []);
      return;
    }
    let committed = false;
    try {
      if (w.status.offset === desc.size && desc.size > 0) {
        await w.commit(desc.size, desc.digest, labels);
      } else {
        if (w.status.offset > 0) w.truncate();
        Object.assign(job, { status: 'downloading', offset: 0, startedAt: Date.now() });
        await this.fetcher.fetchVerified(desc, async (chunk) => {
          await w.write(chunk);
          job.offset += chunk.length;
        }, { signal: this.signal });
        await w.commit(desc.size, desc.digest, labels);
      }
      committed = true;
      Object.assign(job, { status: 'done', offset: desc.size });
    } catch (err) {
      if (isAlreadyExists(err)) {
        committed = true;
        job.status = 'exists';
        await this.mergeLabels(desc.digest, labels, []);
        return;
      }
      throw err;
    } finally {
      if (committed) w.close();
      else {
        // Nothing of a failed download stays behind: end the stream and drop the ingest.
        w.cancel();
        await this.abortIngest(ref);
      }
    }
  }

  private async abortIngest(ref: string): Promise<void> {
    for (let i = 0; i < 20; i++) {
      try {
        await this.cs.abort(ref);
        return;
      } catch (err) {
        if (isNotFound(err)) return;
        if (!isUnavailable(err)) return;
        await new Promise((r) => setTimeout(r, 25));
      }
    }
  }

  /**
   * The manifest `platform` selects under `root`, from the documents as they arrive: NOT_FOUND
   * when the index offers nothing suitable or the fetch did not include it.
   */
  async chooseManifest(root: Descriptor, platform: MatchComparer): Promise<Descriptor> {
    let desc = root;
    for (let depth = 0; depth < 8; depth++) {
      await this.stored(desc.digest);
      if (isManifestType(desc.mediaType)) return desc;
      if (!isIndexType(desc.mediaType)) throw new NotFoundError(`unexpected media type ${desc.mediaType} for ${desc.digest}`);
      const idx = JSON.parse(this.docs.get(desc.digest)!.toString('utf8')) as Index;
      const candidates = sortByPreference((idx.manifests ?? []).filter((d) => (!d.platform || platform.match(d.platform)) && this.isScheduled(d.digest)), platform);
      if (!candidates.length) throw new NotFoundError(`no match for platform in manifest ${root.digest}`);
      desc = candidates[0]!;
    }
    throw new NotFoundError(`manifest ${root.digest}: index nesting too deep`);
  }

  /** Manifest, config and layers of a fetched manifest (waiting for the config). */
  async contents(manifestDesc: Descriptor): Promise<{ config: Descriptor; layers: Layer[]; chainID: string }> {
    await this.stored(manifestDesc.digest);
    const m = JSON.parse(this.docs.get(manifestDesc.digest)!.toString('utf8')) as Manifest;
    await this.stored(m.config.digest);
    const cfg = JSON.parse(this.docs.get(m.config.digest)!.toString('utf8')) as { rootfs?: { diff_ids?: string[] } };
    const diffIDs = cfg.rootfs?.diff_ids ?? [];
    const layers = (m.layers ?? []).filter((l) => isLayerType(l.mediaType));
    if (layers.length !== diffIDs.length) {
      throw new Error(`number of layers and diffIDs don't match: ${layers.length} != ${diffIDs.length}`);
    }
    return { config: m.config, layers: layers.map((blob, i) => ({ blob, diffID: diffIDs[i]! })), chainID: chainID(diffIDs) };
  }
}

/** The platforms a pull fetches (exact matches, as ctr's fetch) and unpacks (each with compatible fallbacks). */
export function pullPlatforms(opts: Pick<PullOptions, 'platforms' | 'allPlatforms' | 'metadataOnly'>): { fetch: MatchComparer; unpack: Platform[] | 'all' } {
  // containerd's "Any of nothing": every platform's layers stay behind.
  if (opts.metadataOnly) return { fetch: any(), unpack: [] };
  if (opts.allPlatforms) return { fetch: all, unpack: 'all' };
  const ps = opts.platforms?.length ? opts.platforms.map(parse) : [defaultSpec()];
  return { fetch: any(...ps), unpack: ps };
}

/** Pulls `ref` into the connection's namespace (see the module comment). */
export async function pull(conn: Connection, ref: string, opts: PullOptions = {}): Promise<PullResult> {
  const resolver = opts.resolver ?? new Resolver(opts.remote ?? {});
  const tracker = opts.progress ?? new ProgressTracker(ref);
  const { fetch: fetchMatcher, unpack: unpackPlatforms } = pullPlatforms(opts);
  const doUnpack = opts.unpack ?? true;
  return withLease(conn, async () => {
    const started = performance.now();
    let resolved;
    try {
      resolved = await resolver.resolve(ref, { signal: opts.signal });
    } catch (err) {
      throw new Error(`failed to resolve reference ${JSON.stringify(ref)}: ${(err as Error).message}`, { cause: err });
    }
    tracker.set(tracker.name, { status: 'resolved' });
    const target: Descriptor = { mediaType: resolved.descriptor.mediaType, digest: resolved.descriptor.digest, size: resolved.descriptor.size };
    const fetcher = await resolver.fetcher(resolved.name);
    const session = new FetchSession(conn, fetcher, distributionSource(resolved.name), fetchMatcher, tracker,
      opts.maxConcurrentDownloads ?? 3, opts.signal, !!(opts.allMetadata || opts.metadataOnly));
    session.schedule(target);

    const snapshotter = doUnpack ? await resolveSnapshotter(conn, opts.snapshotter) : '';
    const unpacked: UnpackedPlatform[] = [];
    const unpackOne = async (p: Platform, waitFetch: boolean): Promise<void> => {
      const m = only(p);
      const name = format(p);
      let config: Descriptor;
      let layers: Layer[];
      if (waitFetch) {
        const contents = await imageContents(new ContentClient(conn), target, m);
        config = contents.configDesc;
        layers = contents.layers;
      } else {
        const manifestDesc = await session.chooseManifest(target, m);
        ({ config, layers } = await session.contents(manifestDesc));
      }
      const top = await unpackLayers(conn, config, layers, {
        snapshotter,
        ready: waitFetch ? undefined : (i) => session.stored(layers[i]!.blob.digest),
        onProgress: (ev) => opts.onUnpack?.(name, ev),
        signal: session.signal,
      });
      unpacked.push({ platform: name, chainID: top, snapshotter });
    };
    let unpacking: Promise<void> = Promise.resolve();
    let unpackFailed = false;
    if (doUnpack && unpackPlatforms !== 'all') {
      unpacking = (async () => {
        for (const p of unpackPlatforms) await unpackOne(p, false);
      })();
      // A failed unpack ends the pull: no point downloading the rest.
      unpacking.catch((err) => {
        unpackFailed = session.cancel(err);
      });
    }

    try {
      await session.wait();
    } catch (err) {
      // When the unpack stopped the fetch, its error is the one to report.
      if (unpackFailed) await unpacking;
      await unpacking.catch(() => undefined);
      throw err;
    }
    const fetched = performance.now();
    opts.onFetched?.();
    const image = await createOrUpdateImage(conn, { name: resolved.name, target, labels: opts.labels ?? {} });
    if (doUnpack) {
      if (unpackPlatforms === 'all') {
        const cs = new ContentClient(conn);
        const seen = new Set<string>();
        for (const p of await platformsOf(cs, target)) {
          const key = format(p);
          if (seen.has(key)) continue;
          seen.add(key);
          await unpackOne(p, true);
        }
      } else {
        await unpacking;
      }
    }
    return { image, unpacked, fetchMs: fetched - started, unpackWaitMs: performance.now() - fetched };
  }, {});
}
