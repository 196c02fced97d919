/**
 * The walking differ: applies layer blobs from content onto snapshot mounts, and writes the
 * difference between two mounted trees as a layer blob into content.
 *
 * Apply streams content → decompression → (hash + count) → tar extraction without ever holding
 * a layer in memory, and avoids mounting where containerd does:
 *  - one overlay mount: the layer is applied straight into its upperdir, whiteouts and opaque
 *    directories converted to overlayfs' own markers (the lowerdirs are the parents);
 *  - one writable bind mount (native, or overlayfs' first layer): applied straight into the
 *    bind source, whiteouts applied by deletion;
 *  - anything else (btrfs, several mounts, read-only binds): mounted on a temporary directory
 *    and applied there by deletion.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Transform, Writable, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip, constants as zconst } from 'node:zlib';
import type { ContentStore } from '../../../core/content/content.js';
import { UNCOMPRESSED_LAYER, type ApplyOptions, type Differ, type DiffOptions } from '../../../core/diff/diff.js';
import { isAlreadyExists, NotImplementedError } from '../../../core/errdefs/errdefs.js';
import { diffCompression, ImageLabel, MediaType, type Descriptor } from '../../../core/images/images.js';
import type { Logger } from '../../../core/log/logger.js';
import type { Mount } from '../../../core/mount/types.js';
import type { RequestContext } from '../../../core/namespaces/namespaces.js';
import { applyLayer, type ApplyMode } from './archive/apply.js';
import { decompressLayer } from './archive/compression.js';
import { writeDiff } from './archive/diff.js';
import { WORKER_MIN_LAYER_BYTES, WorkerGunzip } from './archive/gunzip-worker.js';

export interface WalkingDifferOptions {
  /** Where temporary mounts are made (default: core/mount's location). */
  tempMountBase?: string;
  log?: Logger;
  /** Create device nodes from layers (default: when running as root outside a user namespace). */
  allowDevices?: boolean;
}

/** Counts and hashes the bytes that pass through (the diff id of the uncompressed layer). */
export class DigestCounter extends Transform {
  private readonly hash = createHash('sha256');
  bytes = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }

  digest(): string {
    return `sha256:${this.hash.digest('hex')}`;
  }
}

let userNamespaceCache: boolean | undefined;

/** True when this process runs inside a user namespace (uid 0 not mapped to the host's uid 0). */
export function runningInUserNS(): boolean {
  if (userNamespaceCache !== undefined) return userNamespaceCache;
  try {
    const map = readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/);
    userNamespaceCache = !(map.length === 3 && map[0] === '0' && map[1] === '0' && map[2] === '4294967295');
  } catch {
    userNamespaceCache = false;
  }
  return userNamespaceCache;
}

/** The upperdir and lowerdirs (nearest first) of overlay mount options. */
export function overlayDirs(options: readonly string[]): { upper?: string; lowers: string[] } {
  let upper: string | undefined;
  let lowers: string[] = [];
  for (const o of options) {
    if (o.startsWith('upperdir=')) upper = o.slice('upperdir='.length);
    else if (o.startsWith('lowerdir=')) lowers = o.slice('lowerdir='.length).split(':').filter(Boolean);
  }
  return { upper, lowers };
}

/** How Apply reaches the tree behind `mounts` without mounting, if it can. */
export type DirectTarget = { root: string; mode: ApplyMode; parents: string[] } | undefined;

export function directTarget(mounts: readonly Mount[], inUserNS = runningInUserNS()): DirectTarget {
  if (mounts.length !== 1) return undefined;
  const m = mounts[0]!;
  if (m.target && m.target !== '/' && m.target !== '') return undefined;
  if (m.type === 'overlay') {
    // Rootless overlay (userxattr) keeps its markers in user.* xattrs; the applier writes
    // trusted.* ones, so such mounts are applied through a real mount instead.
    if (inUserNS || m.options.includes('userxattr')) return undefined;
    const { upper, lowers } = overlayDirs(m.options);
    if (!upper) return undefined;
    return { root: upper, mode: 'overlay', parents: lowers };
  }
  if (m.type === 'bind' || m.type === 'rbind') {
    if (m.options.includes('ro')) return undefined;
    return { root: m.source, mode: 'direct', parents: [] };
  }
  return undefined;
}

/** A unique ingest ref like containerd's: `<unix nanos>-<base64url of 3 random bytes>`. */
export function uniqueRef(): string {
  const nanos = BigInt(Date.now()) * 1_000_000n + BigInt(Math.floor(performance.now() * 1000) % 1_000_000);
  return `${nanos}-${randomBytes(3).toString('base64url')}`;
}

export class WalkingDiffer implements Differ {
  constructor(private readonly content: ContentStore, private readonly options: WalkingDifferOptions = {}) {}

  async apply(ctx: RequestContext, desc: Descriptor, mounts: readonly Mount[], _opts: ApplyOptions = {}): Promise<Descriptor> {
    const started = performance.now();
    if (diffCompression(desc.mediaType) === undefined) {
      throw new Error(`failed to get stream processor for ${desc.mediaType}: no processor for media-type`);
    }
    const target = directTarget(mounts);
    if (target) {
      // A bind source that is not a directory (a file bind) goes through a real mount.
      const isDir = await stat(target.root).then((s) => s.isDirectory(), () => false);
      if (isDir) {
        const res = await this.applyInto(ctx, desc, target.root, target.mode, target.parents);
        this.trace(desc, res, started, target.mode);
        return res;
      }
    }
    const { withTempMount } = await import('../../../core/mount/temp.js');
    const res = await withTempMount(mounts, (root) => this.applyInto(ctx, desc, root, 'direct', []), { base: this.options.tempMountBase });
    this.trace(desc, res, started, 'mount');
    return res;
  }

  private trace(desc: Descriptor, res: Descriptor, started: number, how: string): void {
    if (this.options.log?.debugEnabled) {
      this.options.log.debug('diff applied', {
        digest: desc.digest, size: desc.size, media: desc.mediaType, how, uncompressed: res.size,
        ms: +(performance.now() - started).toFixed(1),
      });
    }
  }

  private async applyInto(ctx: RequestContext, desc: Descriptor, root: string, mode: ApplyMode, parents: string[]): Promise<Descriptor> {
    const blob = await this.content.read(ctx, desc.digest);
    // A big gzip layer is inflated and hashed on a worker thread (see gunzip-worker.ts).
    let inflater: WorkerGunzip | undefined;
    const gunzip = desc.size >= WORKER_MIN_LAYER_BYTES ? (s: Readable) => (inflater = new WorkerGunzip(s)) : undefined;
    let plain: Readable;
    try {
      plain = await decompressLayer(blob, desc.mediaType, gunzip);
    } catch (err) {
      blob.destroy();
      throw err;
    }
    let input: Readable = plain;
    let counter: DigestCounter | undefined;
    if (!inflater) {
      const c = (counter = new DigestCounter({ highWaterMark: 1 << 20 }));
      plain.on('error', (err) => c.destroy(err));
      c.on('close', () => {
        if (!plain.readableEnded) plain.destroy();
      });
      input = plain.pipe(c);
    }
    await applyLayer(input, root, {
      mode,
      parentRoots: parents,
      // Device nodes only where mknod is allowed: as root outside a user namespace (containerd skips them in one).
      allowDevices: this.options.allowDevices ?? (process.getuid?.() === 0 && !runningInUserNS()),
      signal: ctx.signal,
      onWarning: (message) => this.options.log?.warn(message, { digest: desc.digest }),
    });
    // applyLayer reads its input to the end, so the digest covers every uncompressed byte.
    if (counter) return { mediaType: UNCOMPRESSED_LAYER, digest: counter.digest(), size: counter.bytes };
    return { mediaType: UNCOMPRESSED_LAYER, digest: inflater!.digest, size: inflater!.bytes };
  }

  async compare(ctx: RequestContext, lower: readonly Mount[], upper: readonly Mount[], opts: DiffOptions = {}): Promise<Descriptor> {
    const mediaType = opts.mediaType || MediaType.ociLayerGzip;
    if (mediaType !== MediaType.ociLayer && mediaType !== MediaType.ociLayerGzip) {
      throw new NotImplementedError(`unsupported diff media type: ${mediaType}`);
    }
    const compressed = mediaType === MediaType.ociLayerGzip;
    const { withTempMount, withReadonlyTempMount } = await import('../../../core/mount/temp.js');
    const base = this.options.tempMountBase;
    return withTempMount(lower, (lowerRoot) =>
      withReadonlyTempMount(upper, (upperRoot) => this.writeLayer(ctx, lowerRoot, upperRoot, mediaType, compressed, opts), { base }),
    { base });
  }

  private async writeLayer(ctx: RequestContext, lowerRoot: string, upperRoot: string, mediaType: string, compressed: boolean, opts: DiffOptions): Promise<Descriptor> {
    const newRef = !opts.ref;
    const ref = opts.ref || uniqueRef();
    const writer = await this.content.writer(ctx, { ref });
    let ok = false;
    try {
      if (!newRef) await writer.truncate();
      const labels = { ...(opts.labels ?? {}) };
      const sink = new Writable({
        highWaterMark: 1 << 20,
        write(chunk: Buffer, _enc, cb) {
          writer.write(chunk).then(() => cb(), cb);
        },
      });
      if (compressed) {
        const counter = new DigestCounter();
        const gzip = createGzip({ level: zconst.Z_DEFAULT_COMPRESSION, chunkSize: 256 * 1024 });
        await Promise.all([writeDiff(lowerRoot, upperRoot, counter, { signal: ctx.signal }), pipeline(counter, gzip, sink)]);
        labels[ImageLabel.uncompressed] = counter.digest();
      } else {
        const finished = new Promise<void>((resolve, reject) => {
          sink.once('finish', resolve);
          sink.once('error', reject);
        });
        await Promise.all([writeDiff(lowerRoot, upperRoot, sink, { signal: ctx.signal }), finished]);
      }
      const digest = await writer.digest();
      const size = writer.status().offset;
      try {
        await writer.commit(size, digest, Object.keys(labels).length ? labels : undefined);
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
      }
      let info = await this.content.info(ctx, digest);
      const want = labels[ImageLabel.uncompressed];
      if (want && info.labels[ImageLabel.uncompressed] === undefined) {
        info = await this.content.update(ctx, digest, { [ImageLabel.uncompressed]: want }, [`labels.${ImageLabel.uncompressed}`]);
      }
      ok = true;
      return { mediaType, digest: info.digest, size: info.size };
    } finally {
      await writer.close().catch(() => undefined);
      if (!ok && newRef) await this.content.abort(ctx, ref).catch(() => undefined);
    }
  }
}
