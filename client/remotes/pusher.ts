/**
 * Pushing to a registry repository, like containerd's docker pusher:
 *
 *  - blobs: HEAD /blobs/<digest> (present → skipped); a cross-repository mount
 *    (POST /blobs/uploads/?mount=<digest>&from=<repo>) when the descriptor's annotations or the
 *    given labels carry containerd.io/distribution.source.<host> naming another repository on the
 *    same registry; otherwise POST /blobs/uploads/ and one streamed PUT <location>?digest=<digest>.
 *  - manifests: PUT /manifests/<tag or digest> with the manifest's media type.
 *
 * Content is streamed and verified on the way out: the last chunk is held back until size and
 * digest check out, so corrupt local content never completes an upload.
 */
import { createHash } from 'node:crypto';
import { pipeline, Readable, Transform, type TransformCallback } from 'node:stream';
import {
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
} from '../../core/errdefs/errdefs.js';
import { hasherFor, validateDigest } from '../reference/digest.js';
import { isTag } from '../reference/reference.js';
import { repositoryScope } from './auth.js';
import { errorFromResponse, headerValue, type RawResponse } from './http.js';
import { limit } from './limit.js';
import type { RepositoryBase } from './resolver.js';
import {
  distributionSourceKey,
  isIndexMediaType,
  isManifestMediaType,
  type Descriptor,
  type RegistryHost,
} from './types.js';

/** Content to push: bytes, a stream (single use), or a factory of streams (re-openable for retries). */
export type PushSource = Buffer | Uint8Array | Readable | (() => Readable | Promise<Readable>);

/** What a push did: found the content already there, mounted it from another repository, or uploaded it. */
export type PushStatus = 'exists' | 'mounted' | 'uploaded';

export interface PushOptions {
  /** For manifests: store under this tag instead of the digest. */
  tag?: string;
  /** Extra labels (e.g. the content store's containerd.io/distribution.source.* labels) for mount selection. */
  labels?: Record<string, string>;
  signal?: AbortSignal;
}

/**
 * Picks the repository to mount a blob from: among the repositories the distribution-source
 * label names for the target's registry host (comma separated), the one sharing the longest
 * leading path with the target repository (never the target itself). Undefined when none.
 */
export function selectMountCandidate(domain: string, repository: string, labels: Record<string, string> | undefined): string | undefined {
  const value = labels?.[distributionSourceKey(domain)];
  if (!value) return undefined;
  const target = repository.split('/');
  let best: string | undefined;
  let bestLen = -1;
  for (const repo of value.split(',').map((r) => r.trim()).filter(Boolean)) {
    if (repo === repository) continue;
    const parts = repo.split('/');
    let n = 0;
    while (n < parts.length && n < target.length && parts[n] === target[n]) n++;
    if (n >= bestLen) {
      bestLen = n;
      best = repo;
    }
  }
  return best;
}

/** Appends query parameters to a request target that may already carry some. */
function withQuery(target: string, params: Record<string, string>): string {
  const q = new URLSearchParams(params).toString();
  return target + (target.includes('?') ? '&' : '?') + q;
}

/**
 * Passes bytes through while counting and hashing them; holds the most recent chunk back until
 * the end so that a size or digest mismatch fails the stream before its last byte is released.
 */
export class VerifyingStream extends Transform {
  private readonly hash;
  private held: Buffer | undefined;
  private count = 0;

  constructor(private readonly desc: Pick<Descriptor, 'digest' | 'size'>) {
    super();
    this.hash = hasherFor(desc.digest);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.count += chunk.length;
    if (this.count > this.desc.size) {
      cb(new FailedPreconditionError(`${this.desc.digest}: content is larger than the expected ${this.desc.size} bytes`));
      return;
    }
    this.hash.update(chunk);
    const out = this.held;
    this.held = chunk;
    cb(null, out);
  }

  override _flush(cb: TransformCallback): void {
    if (this.count !== this.desc.size) {
      cb(new FailedPreconditionError(`${this.desc.digest}: content has ${this.count} bytes, expected ${this.desc.size}`));
      return;
    }
    const actual = `${this.desc.digest.slice(0, this.desc.digest.indexOf(':'))}:${this.hash.digest('hex')}`;
    if (actual !== this.desc.digest) {
      cb(new FailedPreconditionError(`${this.desc.digest}: content digest mismatch, got ${actual}`));
      return;
    }
    cb(null, this.held);
  }
}

function checkBytes(desc: Descriptor, bytes: Uint8Array): void {
  if (bytes.byteLength !== desc.size) {
    throw new FailedPreconditionError(`${desc.digest}: content has ${bytes.byteLength} bytes, expected ${desc.size}`);
  }
  const alg = desc.digest.slice(0, desc.digest.indexOf(':'));
  const actual = `${alg}:${createHash(alg).update(bytes).digest('hex')}`;
  if (actual !== desc.digest) throw new FailedPreconditionError(`${desc.digest}: content digest mismatch, got ${actual}`);
}

/** Pushes content into one repository. */
export class Pusher {
  constructor(readonly base: RepositoryBase) {}

  get ref() {
    return this.base.ref;
  }

  private pushHost(): RegistryHost {
    const host = this.base.hostsWith('push')[0];
    if (!host) throw new NotFoundError(`no push hosts for ${this.base.ref}`);
    return host;
  }

  private get scopes(): string[] {
    return [repositoryScope(this.base.repository, true)];
  }

  /** Pushes a manifest (by media type) or a blob. */
  push(desc: Descriptor, source: PushSource, options: PushOptions = {}): Promise<PushStatus> {
    return isManifestMediaType(desc.mediaType) ? this.pushManifest(desc, source, options) : this.pushBlob(desc, source, options);
  }

  /** Whether the registry already has `desc` (a manifest under options.tag when given). */
  async exists(desc: Descriptor, options: { tag?: string; signal?: AbortSignal } = {}): Promise<boolean> {
    const host = this.pushHost();
    const manifest = isManifestMediaType(desc.mediaType);
    const ref = manifest && options.tag ? options.tag : desc.digest;
    const target = this.base.path(host, manifest ? 'manifests' : 'blobs', ref);
    let res: RawResponse;
    try {
      res = await this.base.request(host, 'HEAD', target, {
        headers: { accept: `${desc.mediaType}, */*` },
        scopes: this.scopes,
        signal: options.signal,
      });
    } catch (err) {
      // Some registries refuse HEAD to push-only credentials; go on and push.
      if (err instanceof PermissionDeniedError) return false;
      throw err;
    }
    res.body.resume();
    if (res.status === 200) {
      if (ref === desc.digest) return true;
      return headerValue(res, 'docker-content-digest') === desc.digest;
    }
    if (res.status === 404 || res.status === 401 || res.status === 403) return false;
    throw await errorFromResponse(res, `checking ${desc.digest} in ${this.base.ref.name}`);
  }

  /** Pushes a blob: skip when present, mount when a source repository is known, else upload. */
  async pushBlob(desc: Descriptor, source: PushSource, options: PushOptions = {}): Promise<PushStatus> {
    validateDigest(desc.digest);
    if (!Number.isSafeInteger(desc.size) || desc.size < 0) throw new InvalidArgumentError(`${desc.digest}: invalid size ${desc.size}`);
    if (source instanceof Uint8Array) checkBytes(desc, source);
    if (await this.exists(desc, { signal: options.signal })) {
      if (source instanceof Readable) source.destroy();
      return 'exists';
    }
    const host = this.pushHost();
    const base = this.base;
    const uploads = base.path(host, 'blobs', 'uploads/');
    let started: RawResponse | undefined;

    const from = selectMountCandidate(base.ref.domain, base.repository, { ...desc.annotations, ...options.labels });
    if (from) {
      const res = await base.request(host, 'POST', withQuery(uploads, { mount: desc.digest, from }), {
        scopes: [...this.scopes, repositoryScope(from)],
        body: Buffer.alloc(0),
        signal: options.signal,
      });
      if (res.status === 201) {
        res.body.resume();
        if (source instanceof Readable) source.destroy();
        return 'mounted';
      }
      if (res.status === 202) started = res; // mount refused, but an upload session was opened
      else res.body.resume(); // no access to the source repository, or it lacks the blob: upload instead
    }
    if (!started) {
      const res = await base.request(host, 'POST', uploads, { scopes: this.scopes, body: Buffer.alloc(0), signal: options.signal });
      if (res.status === 201) {
        res.body.resume();
        if (source instanceof Readable) source.destroy();
        return 'exists';
      }
      if (res.status !== 202 && res.status !== 200 && res.status !== 204) {
        throw await errorFromResponse(res, `starting upload of ${desc.digest} to ${base.ref.name}`);
      }
      started = res;
    }
    started.body.resume();
    const location = headerValue(started, 'location');
    if (!location) throw new FailedPreconditionError(`starting upload of ${desc.digest} to ${base.ref.name}: no Location in response`);
    const origin = `${host.scheme}://${host.host}`;
    const uploadUrl = new URL(!location.startsWith('/') && !location.includes('://') ? `${host.scheme}://${location}` : location, origin);
    uploadUrl.searchParams.append('digest', desc.digest);

    const body = bodyFor(desc, source);
    try {
      const res = await base.request(host, 'PUT', uploadUrl.href, {
        scopes: this.scopes,
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(desc.size) },
        body,
        signal: options.signal,
      });
      if (res.status !== 201 && res.status !== 200 && res.status !== 204) {
        throw await errorFromResponse(res, `uploading ${desc.digest} to ${base.ref.name}`);
      }
      res.body.resume();
      const stored = headerValue(res, 'docker-content-digest');
      if (stored && stored !== desc.digest) {
        throw new FailedPreconditionError(`uploading ${desc.digest} to ${base.ref.name}: registry stored ${stored}`);
      }
      return 'uploaded';
    } catch (err) {
      // Best effort: cancel the upload session so the registry drops the partial data.
      await base
        .request(host, 'DELETE', uploadUrl.href, { scopes: this.scopes, signal: options.signal })
        .then((r) => r.body.resume())
        .catch(() => undefined);
      throw err;
    }
  }

  /** PUTs a manifest under options.tag or its digest, with its media type. */
  async pushManifest(desc: Descriptor, source: PushSource, options: PushOptions = {}): Promise<PushStatus> {
    validateDigest(desc.digest);
    if (options.tag !== undefined && !isTag(options.tag)) throw new InvalidArgumentError(`invalid tag "${options.tag}"`);
    if (source instanceof Uint8Array) checkBytes(desc, source);
    if (await this.exists(desc, { tag: options.tag, signal: options.signal })) {
      if (source instanceof Readable) source.destroy();
      return 'exists';
    }
    const host = this.pushHost();
    const target = this.base.path(host, 'manifests', options.tag ?? desc.digest);
    const res = await this.base.request(host, 'PUT', target, {
      scopes: this.scopes,
      headers: { 'content-type': desc.mediaType, 'content-length': String(desc.size) },
      body: bodyFor(desc, source),
      signal: options.signal,
    });
    if (res.status !== 201 && res.status !== 200 && res.status !== 204) {
      throw await errorFromResponse(res, `pushing manifest ${desc.digest} to ${this.base.ref.name}${options.tag ? `:${options.tag}` : ''}`);
    }
    res.body.resume();
    const stored = headerValue(res, 'docker-content-digest');
    if (stored && stored !== desc.digest) {
      throw new FailedPreconditionError(`pushing manifest ${desc.digest}: registry stored ${stored}`);
    }
    return 'uploaded';
  }
}

function bodyFor(desc: Descriptor, source: PushSource): Buffer | Uint8Array | Readable | (() => Promise<Readable>) {
  if (source instanceof Uint8Array) return source;
  // pipeline() ties the two together: an error or early close on either side destroys both,
  // so an abandoned upload never leaves the source (often a file) open.
  const verify = (s: Readable) => pipeline(s, new VerifyingStream(desc), () => undefined);
  if (source instanceof Readable) return verify(source);
  return async () => verify(await source());
}

/** Supplies the bytes of a descriptor for pushImage (typically from a content store). */
export type ContentProvider = (desc: Descriptor) => PushSource | Promise<PushSource>;

export interface PushImageOptions {
  /** Parallel blob uploads (default 3). */
  concurrency?: number;
  /** Tag for the root manifest; default: the pusher reference's tag (digest when it has none). */
  tag?: string;
  /** Labels per descriptor (e.g. distribution sources from the content store), for mounts. */
  labels?: (desc: Descriptor) => Record<string, string> | undefined;
  signal?: AbortSignal;
}

/**
 * Pushes an image graph rooted at `root` (index → manifests → config and layers): blobs first
 * (in parallel), then child manifests by digest, then the root under its tag.
 * Returns what happened to each digest.
 */
export async function pushImage(
  pusher: Pusher,
  root: Descriptor,
  provider: ContentProvider,
  options: PushImageOptions = {},
): Promise<Map<string, PushStatus>> {
  const results = new Map<string, PushStatus>();
  const run = limit(options.concurrency ?? 3);
  const seen = new Map<string, Promise<void>>();
  const labelsOf = (d: Descriptor) => options.labels?.(d);

  const readManifest = async (desc: Descriptor): Promise<Buffer> => {
    const src = await provider(desc);
    if (src instanceof Uint8Array) return Buffer.from(src);
    const stream = src instanceof Readable ? src : await src();
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of stream as AsyncIterable<Buffer>) {
      n += c.length;
      if (n > 4 * 1024 * 1024 + desc.size) throw new FailedPreconditionError(`${desc.digest}: manifest too large`);
      chunks.push(c);
    }
    return Buffer.concat(chunks);
  };

  const visit = (desc: Descriptor, isRoot: boolean): Promise<void> => {
    const key = `${desc.digest}${isRoot ? '#root' : ''}`;
    let p = seen.get(key);
    if (!p) {
      p = (async () => {
        if (!isManifestMediaType(desc.mediaType)) {
          const status = await run(async () => pusher.pushBlob(desc, await provider(desc), { labels: labelsOf(desc), signal: options.signal }));
          results.set(desc.digest, status);
          return;
        }
        const bytes = await readManifest(desc);
        checkBytes(desc, bytes);
        const doc = JSON.parse(bytes.toString('utf8')) as { manifests?: Descriptor[]; config?: Descriptor; layers?: Descriptor[] };
        const children: Descriptor[] = isIndexMediaType(desc.mediaType)
          ? (doc.manifests ?? [])
          : [...(doc.config ? [doc.config] : []), ...(doc.layers ?? [])];
        await Promise.all(children.map((c) => visit(c, false)));
        const tag = isRoot ? (options.tag ?? pusher.ref.tag) : undefined;
        const status = await pusher.pushManifest(desc, bytes, { tag, signal: options.signal });
        if (!results.has(desc.digest) || isRoot) results.set(desc.digest, status);
      })();
      seen.set(key, p);
    }
    return p;
  };

  await visit(root, true);
  return results;
}
