/**
 * The registry resolver: turns a reference into a descriptor (HEAD /v2/<repo>/manifests/<tag>),
 * and hands out fetchers (manifests and blobs, with Range resume and digest verification) and
 * pushers for a repository. Behaves like containerd's remotes/docker resolver.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { Readable, Transform, type TransformCallback, type Writable } from 'node:stream';
import {
  BerthError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  UnavailableError,
  isNotFound,
} from '../../core/errdefs/errdefs.js';
import { digestProblem, hasherFor, validateDigest } from '../reference/digest.js';
import { parseNormalizedNamed, tagNameOnly, type Reference } from '../reference/reference.js';
import { repositoryScope } from './auth.js';
import {
  errorFromResponse,
  headerValue,
  readAll,
  redact,
  registryRequest,
  type HeaderMap,
  type RawResponse,
  type RequestBody,
} from './http.js';
import { configureHosts, type HostsOptions } from './hosts.js';
import { Pusher } from './pusher.js';
import {
  MediaTypes,
  isManifestMediaType,
  type Descriptor,
  type HostCapability,
  type RegistryHost,
  type RegistryHosts,
} from './types.js';

/** Largest manifest accepted when resolving (same bound as containerd). */
export const MAX_MANIFEST_SIZE = 4 * 1048 * 1048;

/** Accept header of resolve requests. */
export const RESOLVE_ACCEPT = [
  MediaTypes.OCI_INDEX,
  MediaTypes.OCI_MANIFEST,
  MediaTypes.DOCKER_MANIFEST_LIST,
  MediaTypes.DOCKER_MANIFEST,
  '*/*',
].join(', ');

export interface ResolverOptions extends HostsOptions {
  /** Host lookup; built from the HostsOptions (configPath, plainHttp, credentials, headers) when absent. */
  hosts?: RegistryHosts;
  userAgent?: string;
}

export interface Resolved {
  /** The normalized reference that was resolved. */
  name: string;
  descriptor: Descriptor;
}

export interface FetchOptions {
  /** Start at this byte (sends Range: bytes=<offset>-). */
  offset?: number;
  signal?: AbortSignal;
}

export interface FetchVerifiedOptions extends FetchOptions {
  /**
   * The first `offset` bytes the caller already holds (to seed the hash when resuming a partial
   * download); required when offset > 0.
   */
  existing?: Readable | Uint8Array;
  /** Resumes after a dropped connection (default 5). */
  retries?: number;
  /** End the sink after a verified download (default: leave it open for the caller to commit). */
  end?: boolean;
}

export interface FetchVerifiedResult {
  digest: string;
  size: number;
  /** How many times the download was resumed after a dropped connection. */
  resumes: number;
}

/** Where fetched bytes go: a Writable (backpressure honoured) or an async callback. */
export type Sink = Writable | ((chunk: Buffer) => void | Promise<void>);

/** A repository on a registry, with its candidate hosts: the shared part of fetcher and pusher. */
export class RepositoryBase {
  constructor(
    readonly ref: Reference,
    readonly hosts: readonly RegistryHost[],
    readonly userAgent?: string,
  ) {}

  /** Repository path as the registry API uses it (e.g. "library/busybox"). */
  get repository(): string {
    return this.ref.path;
  }

  hostsWith(cap: HostCapability): RegistryHost[] {
    return this.hosts.filter((h) => h.capabilities.includes(cap));
  }

  /** API path for this repository on `host`: <host path>/<repo>/<parts…>. */
  path(host: RegistryHost, ...parts: string[]): string {
    const segs = [host.path, this.repository, ...parts].flatMap((p) => p.split('/')).filter(Boolean);
    let p = `/${segs.join('/')}`;
    if (parts.length > 0 && parts[parts.length - 1].endsWith('/')) p += '/';
    return p;
  }

  /** Like path(), plus ?ns=<namespace> when `host` is a mirror, so a pull-through proxy knows the upstream. */
  pullPath(host: RegistryHost, ...parts: string[]): string {
    const p = this.path(host, ...parts);
    return this.isMirror(host) ? `${p}?ns=${encodeURIComponent(this.ref.domain)}` : p;
  }

  /** True when `host` serves this namespace on behalf of another registry (a mirror). */
  isMirror(host: RegistryHost): boolean {
    const ns = this.ref.domain;
    return host.host !== ns && !(ns === 'docker.io' && host.host === 'registry-1.docker.io');
  }

  request(
    host: RegistryHost,
    method: string,
    target: string,
    opts: { headers?: HeaderMap; body?: RequestBody; scopes: readonly string[]; followRedirects?: boolean; signal?: AbortSignal },
  ): Promise<RawResponse> {
    return registryRequest({ host, method, target, userAgent: this.userAgent, ...opts });
  }
}

/** Resolves references and creates fetchers/pushers. */
export class Resolver {
  readonly hosts: RegistryHosts;
  private readonly userAgent?: string;

  constructor(options: ResolverOptions = {}) {
    this.hosts = options.hosts ?? configureHosts(options);
    this.userAgent = options.userAgent;
  }

  /** Parses and normalizes a reference (docker.io/library, :latest when neither tag nor digest). */
  static normalize(ref: string | Reference): Reference {
    return tagNameOnly(typeof ref === 'string' ? parseNormalizedNamed(ref) : ref);
  }

  async base(ref: string | Reference): Promise<RepositoryBase> {
    const r = Resolver.normalize(ref);
    return new RepositoryBase(r, await this.hosts(r.domain), this.userAgent);
  }

  /**
   * Resolves a reference to the descriptor of its manifest or index. By tag: HEAD on
   * /manifests/<tag> (GET when the response lacks Docker-Content-Digest or a length; the digest is
   * then computed from the body). By digest: /manifests/<digest>, then /blobs/<digest>.
   * Hosts are tried in order; a 404 moves on to the next host.
   */
  async resolve(ref: string | Reference, options: { signal?: AbortSignal } = {}): Promise<Resolved> {
    const base = await this.base(ref);
    const r = base.ref;
    const byDigest = r.digest;
    const hosts = base.hostsWith('pull').filter((h) => byDigest !== undefined || h.capabilities.includes('resolve'));
    if (hosts.length === 0) throw new NotFoundError(`no resolve hosts for ${r}`);
    const paths = byDigest ? [['manifests', byDigest], ['blobs', byDigest]] : [['manifests', r.tag!]];
    const scopes = [repositoryScope(base.repository)];
    let firstErr: Error | undefined;
    for (const parts of paths) {
      for (const host of hosts) {
        const target = base.pullPath(host, ...parts);
        let res: RawResponse;
        try {
          res = await base.request(host, 'HEAD', target, { headers: { accept: RESOLVE_ACCEPT }, scopes, signal: options.signal });
        } catch (err) {
          if (options.signal?.aborted) throw err;
          if (err instanceof PermissionDeniedError) {
            firstErr ??= new PermissionDeniedError(`pull access denied for ${r}, repository does not exist or may require authorization: ${err.message}`, { cause: err });
          } else firstErr ??= err as Error;
          continue;
        }
        if (res.status === 404) {
          res.body.resume();
          continue;
        }
        if (res.status > 299) {
          const err = await errorFromResponse(res, `resolving ${r} on ${host.host}`);
          if (res.status === 401 || res.status === 403) {
            firstErr ??= new PermissionDeniedError(`pull access denied for ${r}, repository does not exist or may require authorization: ${err.message}`);
          } else firstErr ??= err;
          continue;
        }
        if (res.method === 'HEAD') res.body.resume();
        let mediaType = manifestMediaType(res);
        let size = res.method === 'HEAD' ? contentLength(res) : undefined;
        let digest = byDigest;
        if (!digest) {
          const header = headerValue(res, 'docker-content-digest');
          if (header && size !== undefined) {
            const problem = digestProblem(header);
            if (problem) throw new FailedPreconditionError(`resolving ${r}: Docker-Content-Digest "${header}" is not a valid digest: ${problem}`);
            digest = header;
          }
        }
        if (!digest || size === undefined || (!mediaType && parts[0] === 'manifests')) {
          // No usable digest, length or media type from HEAD (or HEAD was refused): read the
          // manifest, measure it and take the media type from its body when the headers lack it.
          let get = res;
          if (res.method === 'HEAD') {
            get = await base.request(host, 'GET', target, { headers: { accept: RESOLVE_ACCEPT }, scopes, signal: options.signal });
            if (get.status > 299) {
              firstErr ??= await errorFromResponse(get, `resolving ${r} on ${host.host}`);
              continue;
            }
          }
          const body = await readAll(get, MAX_MANIFEST_SIZE);
          mediaType = manifestMediaType(get) || mediaTypeFromBody(body) || mediaType;
          const algorithm = digest ? digest.slice(0, digest.indexOf(':')) : 'sha256';
          const computed = `${algorithm}:${createHash(algorithm).update(body).digest('hex')}`;
          if (digest && computed !== digest) {
            throw new FailedPreconditionError(`resolving ${r}: content from ${host.host} has digest ${computed}, expected ${digest}`);
          }
          digest = computed;
          size = body.length;
        }
        if (!digest || size === undefined) {
          firstErr ??= new UnavailableError(`resolving ${r} on ${host.host}: no digest or size in response`);
          continue;
        }
        if (size > MAX_MANIFEST_SIZE) {
          firstErr ??= new NotFoundError(`rejecting ${size} byte manifest for ${r}`);
          continue;
        }
        const fallbackType = parts[0] === 'blobs' ? 'application/octet-stream' : MediaTypes.OCI_MANIFEST;
        return { name: r.toString(), descriptor: { mediaType: mediaType || fallbackType, digest, size } };
      }
    }
    throw firstErr ?? new NotFoundError(`${r}`);
  }

  async fetcher(ref: string | Reference): Promise<Fetcher> {
    return new Fetcher(await this.base(ref));
  }

  async pusher(ref: string | Reference): Promise<Pusher> {
    return new Pusher(await this.base(ref));
  }
}

function manifestMediaType(res: RawResponse): string {
  let ct = headerValue(res, 'content-type') ?? '';
  const semi = ct.indexOf(';');
  if (semi >= 0) ct = ct.slice(0, semi);
  ct = ct.trim();
  if (ct === 'text/plain') return MediaTypes.DOCKER_SCHEMA1_MANIFEST;
  if (ct === 'application/octet-stream' || ct === 'application/json') return '';
  return ct;
}

function mediaTypeFromBody(body: Buffer): string | undefined {
  try {
    const doc = JSON.parse(body.toString('utf8')) as { mediaType?: unknown; manifests?: unknown; layers?: unknown; schemaVersion?: unknown };
    if (typeof doc.mediaType === 'string') return doc.mediaType;
    if (Array.isArray(doc.manifests)) return MediaTypes.OCI_INDEX;
    if (Array.isArray(doc.layers)) return MediaTypes.OCI_MANIFEST;
    if (doc.schemaVersion === 1) return MediaTypes.DOCKER_SCHEMA1_MANIFEST;
  } catch {
    /* not JSON */
  }
  return undefined;
}

function contentLength(res: RawResponse): number | undefined {
  const v = headerValue(res, 'content-length');
  if (v === undefined || !/^\d+$/.test(v)) return undefined;
  return Number(v);
}

/** Drops the first `n` bytes of a stream (for servers that answer a Range request with 200). */
class SkipBytes extends Transform {
  constructor(private remaining: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.remaining >= chunk.length) {
      this.remaining -= chunk.length;
      cb();
      return;
    }
    const rest = chunk.subarray(this.remaining);
    this.remaining = 0;
    cb(null, rest);
  }
  override _flush(cb: TransformCallback): void {
    cb(this.remaining > 0 ? new UnavailableError(`response ended ${this.remaining} bytes before the requested offset`) : null);
  }
}

/** Fetches manifests and blobs of one repository. */
export class Fetcher {
  constructor(readonly base: RepositoryBase) {}

  /** Opens `desc`: /manifests/<digest> for manifest media types, /blobs/<digest> otherwise. */
  fetch(desc: Descriptor, options: FetchOptions = {}): Promise<Readable> {
    return isManifestMediaType(desc.mediaType) ? this.fetchManifest(desc, options) : this.fetchBlob(desc, options);
  }

  /** Opens /blobs/<digest> (or one of desc.urls first), from `offset` when given. */
  fetchBlob(desc: Descriptor, options: FetchOptions = {}): Promise<Readable> {
    return this.open(desc, 'blobs', options);
  }

  /** Opens /manifests/<digest>, from `offset` when given. */
  fetchManifest(desc: Descriptor, options: FetchOptions = {}): Promise<Readable> {
    return this.open(desc, 'manifests', options);
  }

  /** Fetches a whole (small) object into memory, verified. */
  async fetchBytes(desc: Descriptor, options: { signal?: AbortSignal; maxSize?: number } = {}): Promise<Buffer> {
    const max = options.maxSize ?? MAX_MANIFEST_SIZE;
    if (desc.size > max) throw new FailedPreconditionError(`${desc.digest}: ${desc.size} bytes exceeds the ${max} byte limit`);
    const chunks: Buffer[] = [];
    await this.fetchVerified(desc, (c) => void chunks.push(c), { signal: options.signal });
    return Buffer.concat(chunks);
  }

  /**
   * Downloads `desc` into `sink`, hashing as it goes. Fails with FailedPreconditionError when the
   * content is longer or shorter than desc.size or its digest differs — before the sink is ended,
   * so the caller commits nothing. A dropped connection is resumed from the received offset with
   * a Range request (at most `retries` times).
   */
  async fetchVerified(desc: Descriptor, sink: Sink, options: FetchVerifiedOptions = {}): Promise<FetchVerifiedResult> {
    validateDigest(desc.digest);
    if (!Number.isSafeInteger(desc.size) || desc.size < 0) throw new InvalidArgumentError(`${desc.digest}: invalid size ${desc.size}`);
    const hash = hasherFor(desc.digest);
    let received = options.offset ?? 0;
    if (received < 0 || received > desc.size) throw new InvalidArgumentError(`${desc.digest}: offset ${received} outside 0..${desc.size}`);
    if (received > 0) {
      if (options.existing === undefined) throw new InvalidArgumentError(`${desc.digest}: resuming at ${received} needs the existing bytes to hash`);
      let seen = 0;
      if (options.existing instanceof Uint8Array) {
        hash.update(options.existing.subarray(0, received));
        seen = Math.min(received, options.existing.byteLength);
      } else {
        for await (const c of options.existing as AsyncIterable<Buffer>) {
          const part = c.subarray(0, Math.max(0, received - seen));
          hash.update(part);
          seen += part.length;
        }
      }
      if (seen !== received) throw new InvalidArgumentError(`${desc.digest}: existing data has ${seen} bytes, expected ${received}`);
    }
    const write = typeof sink === 'function'
      ? sink
      : async (chunk: Buffer) => {
          if (!sink.write(chunk)) await Promise.race([once(sink, 'drain'), once(sink, 'error').then(([e]) => Promise.reject(e))]);
        };
    const maxResumes = options.retries ?? 5;
    let resumes = 0;
    for (;;) {
      if (received === desc.size) break;
      let stream: Readable | undefined;
      try {
        stream = await this.fetch(desc, { offset: received, signal: options.signal });
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          if (received + chunk.length > desc.size) {
            stream.destroy();
            throw new FailedPreconditionError(`${desc.digest}: content is larger than the expected ${desc.size} bytes`);
          }
          hash.update(chunk);
          received += chunk.length;
          await write(chunk);
        }
        if (received !== desc.size) {
          throw new FailedPreconditionError(`${desc.digest}: content ended at ${received} bytes, expected ${desc.size}`);
        }
        break;
      } catch (err) {
        stream?.destroy();
        if (!isResumable(err) || options.signal?.aborted) throw err;
        if (resumes >= maxResumes) {
          if (err instanceof BerthError) throw err;
          throw new UnavailableError(
            `${desc.digest}: download failed at byte ${received} of ${desc.size} after ${resumes} resumes: ${(err as Error)?.message ?? String(err)}`,
            { cause: err },
          );
        }
        resumes++;
        await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** (resumes - 1), 2000)));
      }
    }
    const actual = `${desc.digest.slice(0, desc.digest.indexOf(':'))}:${hash.digest('hex')}`;
    if (actual !== desc.digest) {
      throw new FailedPreconditionError(`${desc.digest}: content digest mismatch, got ${actual}`);
    }
    if (options.end && typeof sink !== 'function') {
      sink.end();
      await once(sink, 'finish');
    }
    return { digest: actual, size: received, resumes };
  }

  private async open(desc: Descriptor, kind: 'blobs' | 'manifests', options: FetchOptions): Promise<Readable> {
    validateDigest(desc.digest);
    const offset = options.offset ?? 0;
    if (offset < 0 || !Number.isSafeInteger(offset)) throw new InvalidArgumentError(`invalid offset ${offset}`);
    if (desc.size >= 0 && offset === desc.size && offset > 0) return Readable.from([]);
    if (desc.size >= 0 && offset > desc.size) throw new InvalidArgumentError(`offset ${offset} beyond size ${desc.size} of ${desc.digest}`);
    const base = this.base;
    const scopes = [repositoryScope(base.repository)];
    const accept = `${desc.mediaType || '*/*'}, */*`;
    const headers: HeaderMap = { accept };
    if (offset > 0) headers.range = `bytes=${offset}-`;
    let firstErr: Error | undefined;

    // Alternative URLs (foreign layers) first.
    if (kind === 'blobs') {
      for (const u of desc.urls ?? []) {
        let url: URL;
        try {
          url = new URL(u);
        } catch {
          continue;
        }
        if (url.protocol !== 'http:' && url.protocol !== 'https:') continue;
        const host: RegistryHost = { scheme: url.protocol === 'http:' ? 'http' : 'https', host: url.host, path: '', capabilities: ['pull'], header: {} };
        try {
          return await this.openOn(host, url.href, headers, scopes, offset, options.signal);
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
      }
    }

    const hosts = base.hostsWith('pull');
    if (hosts.length === 0) throw new NotFoundError(`no pull hosts for ${base.ref}`);
    for (const host of hosts) {
      try {
        return await this.openOn(host, base.pullPath(host, kind, desc.digest), headers, scopes, offset, options.signal);
      } catch (err) {
        if (options.signal?.aborted) throw err;
        firstErr ??= err as Error;
      }
    }
    if (firstErr && isNotFound(firstErr)) {
      throw new NotFoundError(`could not fetch ${desc.digest} (${desc.mediaType}) from ${base.ref.name}`, { cause: firstErr });
    }
    throw firstErr ?? new NotFoundError(desc.digest);
  }

  private async openOn(
    host: RegistryHost,
    target: string,
    headers: HeaderMap,
    scopes: string[],
    offset: number,
    signal?: AbortSignal,
  ): Promise<Readable> {
    const res = await this.base.request(host, 'GET', target, { headers, scopes, signal });
    if (res.status === 404) {
      res.body.resume();
      throw new NotFoundError(`content at ${redact(res.url)} not found`);
    }
    if (res.status > 299) throw await errorFromResponse(res);
    if (offset > 0) {
      const range = headerValue(res, 'content-range');
      if (res.status === 206 || range) {
        if (!range || !range.startsWith(`bytes ${offset}-`)) {
          res.body.destroy();
          throw new UnavailableError(`${redact(res.url)}: unexpected content range "${range ?? ''}" for offset ${offset}`);
        }
      } else {
        // The server ignored the Range header and sent everything: drop what we already have.
        const skip = new SkipBytes(offset);
        res.body.on('error', (e) => skip.destroy(e));
        return res.body.pipe(skip);
      }
    }
    return res.body;
  }
}

/** Errors after which a download is worth resuming: transport failures, not content or permission problems. */
function isResumable(err: unknown): boolean {
  if (err instanceof FailedPreconditionError || err instanceof PermissionDeniedError || err instanceof InvalidArgumentError) return false;
  if (err instanceof NotFoundError) return false;
  if (err instanceof BerthError) return err instanceof UnavailableError;
  const e = err as NodeJS.ErrnoException;
  if (e?.name === 'AbortError') return false;
  return true; // ECONNRESET, "aborted", premature close…
}
