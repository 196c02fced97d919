/**
 * Pushing a local image to a registry: the image's graph is read from content and handed to the
 * registry client's pushImage (blobs first, existence checks, cross-repository mounts from the
 * blobs' distribution-source labels, then manifests, the root under its tag).
 */
import { PassThrough, Transform, type Readable } from 'node:stream';
import { InvalidArgumentError } from '../../core/errdefs/errdefs.js';
import { ImageLabel, isIndexType, isManifestType, isNonDistributable, type Descriptor } from '../../core/images/images.js';
import type { Connection } from '../connection.js';
import { ContentClient } from '../images/content.js';
import { children } from '../images/image.js';
import { getImageRecord } from '../images/store.js';
import { newMatcher, parse } from '../platforms/index.js';
import { Resolver, type ResolverOptions } from '../remotes/resolver.js';
import { pushImage, type PushStatus } from '../remotes/pusher.js';
import { ProgressTracker } from './progress.js';

export interface PushOptions {
  resolver?: Resolver;
  remote?: ResolverOptions;
  /** Local image name (default: the remote reference). */
  local?: string;
  /** Push this manifest digest instead of an image's target. */
  manifest?: string;
  manifestType?: string;
  /** With exactly one platform: push only that platform's manifest of an index. */
  platforms?: string[];
  maxConcurrentUploads?: number;
  allowNonDistributable?: boolean;
  progress?: ProgressTracker;
  signal?: AbortSignal;
}

export interface PushResult {
  root: Descriptor;
  statuses: Map<string, PushStatus>;
}

/**
 * The distribution-source labels of a blob, also under the key with the registry's port: Go
 * clients write `containerd.io/distribution.source.<hostname>` (no port), the registry client
 * looks up `…<host:port>`.
 */
export function mountLabels(labels: Record<string, string>, domain: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels)) {
    if (!k.startsWith(ImageLabel.distributionSourcePrefix)) continue;
    out[k] = v;
    const host = k.slice(ImageLabel.distributionSourcePrefix.length);
    if (domain !== host && domain.replace(/:\d+$/, '') === host) out[`${ImageLabel.distributionSourcePrefix}${domain}`] = v;
  }
  return out;
}

export async function push(conn: Connection, ref: string, opts: PushOptions = {}): Promise<PushResult> {
  if (!ref) throw new InvalidArgumentError('please provide a remote image reference to push');
  const cs = new ContentClient(conn);
  let root: Descriptor;
  if (opts.manifest) {
    root = { mediaType: opts.manifestType || 'application/vnd.oci.image.manifest.v1+json', digest: opts.manifest, size: 0 };
    root.size = (await cs.info(root.digest)).size;
  } else {
    const img = await getImageRecord(conn, opts.local || ref);
    root = img.target;
    if (opts.platforms?.length === 1 && isIndexType(root.mediaType)) {
      const m = newMatcher(parse(opts.platforms[0]!));
      for (const c of await children(cs, root)) {
        if (c.platform && m.match(c.platform)) {
          await children(cs, c);
          root = c;
          break;
        }
      }
    }
  }
  const resolver = opts.resolver ?? new Resolver(opts.remote ?? {});
  const pusher = await resolver.pusher(ref);
  const tracker = opts.progress ?? new ProgressTracker(ref, null);

  // Labels of every blob (for mounts), and the progress jobs, from one walk over the graph.
  const labels = new Map<string, Record<string, string>>();
  const walk = async (d: Descriptor): Promise<void> => {
    if (labels.has(d.digest)) return;
    if (!opts.allowNonDistributable && isNonDistributable(d.mediaType)) return;
    const info = await cs.info(d.digest);
    labels.set(d.digest, mountLabels(info.labels, pusher.ref.domain));
    tracker.add(d, 'waiting');
    if (isManifestType(d.mediaType) || isIndexType(d.mediaType)) for (const c of await children(cs, d)) await walk(c);
  };
  await walk(root);

  const provider = (d: Descriptor) => () => {
    const job = tracker.add(d);
    Object.assign(job, { status: 'uploading', offset: 0, total: d.size, startedAt: Date.now() });
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        job.offset += chunk.length;
        cb(null, chunk);
      },
    });
    const src: Readable = cs.readStream(d.digest, 0, opts.signal);
    src.on('error', (e) => counter.destroy(e));
    return src.pipe(counter) as PassThrough;
  };
  const statuses = await pushImage(pusher, root, provider, {
    concurrency: opts.maxConcurrentUploads ?? 3,
    labels: (d) => labels.get(d.digest),
    signal: opts.signal,
  });
  for (const [digest, status] of statuses) {
    for (const job of tracker.list()) {
      if (job.desc?.digest === digest) Object.assign(job, { status: status === 'uploaded' ? 'done' : status === 'mounted' ? 'done' : 'exists', offset: job.desc.size });
    }
  }
  return { root, statuses };
}
