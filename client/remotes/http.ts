/**
 * The HTTP layer of the registry client: one request over node's http/https (so per-host TLS
 * agents work), plus the registry request loop — authorization, 401 challenge retries, HEAD→GET
 * fallback for manifests, 408/429 back-off and redirects — and registry error mapping.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import {
  BerthError,
  Code,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  NotImplementedError,
  PermissionDeniedError,
  RemoteError,
  UnavailableError,
} from '../../core/errdefs/errdefs.js';
import type { RegistryHost } from './types.js';

export const DEFAULT_USER_AGENT = 'berth/0.1.0';
/** Socket idle timeout applied to every request (a stalled body counts as a dropped connection). */
export const DEFAULT_TIMEOUT_MS = 60_000;
const MAX_REDIRECTS = 10;
const MAX_AUTH_RETRIES = 3;
const MAX_BUSY_RETRIES = 3;

export type HeaderMap = Record<string, string | string[] | undefined>;

export interface SendOptions {
  method: string;
  url: URL;
  headers?: HeaderMap;
  body?: Buffer | Uint8Array | Readable;
  /** Must match the URL's protocol; node's global agent is used when absent. */
  agent?: http.Agent;
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface RawResponse {
  status: number;
  statusText: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  url: URL;
  method: string;
  body: IncomingMessage;
}

/** Every value of a response header, unjoined (node joins some repeated headers with ", "). */
export function headerValues(res: Pick<RawResponse, 'rawHeaders'>, name: string): string[] {
  const out: string[] = [];
  const lower = name.toLowerCase();
  for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
    if (res.rawHeaders[i].toLowerCase() === lower) out.push(res.rawHeaders[i + 1]);
  }
  return out;
}

export function headerValue(res: Pick<RawResponse, 'headers'>, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** Sends one HTTP request and resolves when the response head arrives. */
export function send(opts: SendOptions): Promise<RawResponse> {
  const { url, method } = opts;
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return Promise.reject(new InvalidArgumentError(`unsupported URL scheme in ${url.href}`));
  }
  const mod = url.protocol === 'https:' ? https : http;
  const headers: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(opts.headers ?? {})) if (v !== undefined) headers[k] = v;
  if (opts.body instanceof Uint8Array && headers['content-length'] === undefined && headers['Content-Length'] === undefined) {
    headers['content-length'] = String(opts.body.byteLength);
  }
  return new Promise<RawResponse>((resolve, reject) => {
    let settled = false;
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      reject(wrapNetworkError(method, url, err));
    };
    const req = mod.request(url, { method, headers, agent: opts.agent, signal: opts.signal });
    const timeout = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (timeout > 0) {
      req.setTimeout(timeout, () => req.destroy(new UnavailableError(`${method} ${redact(url)}: no data for ${timeout} ms`)));
    }
    req.on('error', fail);
    req.on('response', (res) => {
      if (settled) {
        res.resume();
        return;
      }
      settled = true;
      resolve({
        status: res.statusCode ?? 0,
        statusText: res.statusMessage ?? '',
        headers: res.headers,
        rawHeaders: res.rawHeaders,
        url,
        method,
        body: res,
      });
    });
    const body = opts.body;
    if (body instanceof Readable) {
      body.on('error', (err) => req.destroy(err));
      body.pipe(req);
    } else {
      req.end(body);
    }
  });
}

function wrapNetworkError(method: string, url: URL, err: unknown): Error {
  if (err instanceof BerthError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e?.name === 'AbortError') return e;
  return new UnavailableError(`${method} ${redact(url)}: ${e?.message ?? String(err)}`, { cause: err });
}

/** The URL without query (upload URLs carry opaque state) for messages. */
export function redact(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

/** Consumes and discards a response body. */
export function discard(res: RawResponse): void {
  res.body.resume();
}

/** Reads at most `limit` bytes of a body as text (the rest is discarded). */
export async function readText(res: RawResponse, limit = 64 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    if (n < limit) chunks.push(chunk.subarray(0, limit - n));
    n += chunk.length;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Reads a whole body, failing when it exceeds `limit` bytes. */
export async function readAll(res: RawResponse, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > limit) {
      res.body.destroy();
      throw new FailedPreconditionError(`${res.method} ${redact(res.url)}: response larger than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** One entry of a registry's JSON error body. */
export interface RegistryErrorEntry {
  code: string;
  message?: string;
  detail?: unknown;
}

/** Parses the distribution-spec error body ({"errors":[{code,message,detail}]}); [] when it is not one. */
export function parseRegistryErrors(text: string): RegistryErrorEntry[] {
  try {
    const parsed = JSON.parse(text) as { errors?: unknown };
    if (!Array.isArray(parsed?.errors)) return [];
    return parsed.errors.filter((e): e is RegistryErrorEntry => typeof e === 'object' && e !== null && typeof (e as RegistryErrorEntry).code === 'string');
  } catch {
    return [];
  }
}

/** The classified error for an HTTP status. */
export function errorForStatus(status: number, message: string): Error {
  switch (status) {
    case 400:
      return new InvalidArgumentError(message);
    case 401:
    case 403:
      return new PermissionDeniedError(message);
    case 404:
      return new NotFoundError(message);
    case 405:
    case 501:
      return new NotImplementedError(message);
    case 409:
    case 412:
    case 416:
      return new FailedPreconditionError(message);
    case 408:
    case 429:
      return new UnavailableError(message);
    default:
      return status >= 500 ? new UnavailableError(message) : new RemoteError(Code.UNKNOWN, message);
  }
}

/** Reads an unsuccessful response's body and turns it into a classified error. */
export async function errorFromResponse(res: RawResponse, context?: string): Promise<Error> {
  let detail = '';
  if (res.method !== 'HEAD') {
    const text = await readText(res).catch(() => '');
    const entries = parseRegistryErrors(text);
    if (entries.length > 0) {
      detail = ` - ${entries.map((e) => (e.message ? `${e.code}: ${e.message}` : e.code)).join('; ')}`;
    }
  } else {
    discard(res);
  }
  const what = context ?? `${res.method} ${redact(res.url)}`;
  return errorForStatus(res.status, `${what}: unexpected status ${res.status} ${res.statusText}${detail}`);
}

/** The outcome of handing a 401 to an authorizer. */
export interface ChallengeOutcome {
  retry: boolean;
  /** Scopes the challenge asked for, to add to the retried request's token. */
  scopes?: string[];
}

/** Attaches credentials to requests and learns from 401 challenges. */
export interface RequestAuthorizer {
  authorize(host: string, scopes: readonly string[], signal?: AbortSignal): Promise<string | undefined>;
  handleChallenge(
    host: string,
    res: Pick<RawResponse, 'rawHeaders' | 'status'>,
    context: { scopes: readonly string[]; sentAuthorization?: string; signal?: AbortSignal },
  ): Promise<ChallengeOutcome>;
}

export type RequestBody = Buffer | Uint8Array | Readable | (() => Readable | Promise<Readable>);

export interface RegistryRequestOptions {
  host: RegistryHost;
  method: string;
  /** Absolute URL, or a path (with optional query) on the host. */
  target: string | URL;
  headers?: HeaderMap;
  body?: RequestBody;
  /** Token scopes the request needs (e.g. "repository:a/b:pull"). */
  scopes: readonly string[];
  /** Follow 3xx redirects (default: yes for requests without a body). */
  followRedirects?: boolean;
  userAgent?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(signal.reason);
    }, { once: true });
  });

/**
 * Performs a registry request on `host`: authorizes it, answers 401 challenges (bounded), turns
 * HEAD into GET for manifests when HEAD is refused, backs off on 408/429 and follows redirects.
 * Returns the final response whatever its status.
 */
export async function registryRequest(opts: RegistryRequestOptions): Promise<RawResponse> {
  const { host } = opts;
  let url = typeof opts.target === 'string' && !/^https?:\/\//.test(opts.target)
    ? new URL(`${host.scheme}://${host.host}${opts.target}`)
    : new URL(opts.target);
  let method = opts.method;
  let body = opts.body;
  const canReplay = () => !(body instanceof Readable);
  let extraScopes: string[] = [];
  let authRetries = 0;
  let busyRetries = 0;
  let redirects = 0;
  let used = false;
  const follow = opts.followRedirects ?? body === undefined;

  for (;;) {
    if (used && !canReplay()) {
      throw new FailedPreconditionError(`${method} ${redact(url)}: request must be retried but its body stream was already consumed`);
    }
    const onHost = url.host === host.host && url.protocol === `${host.scheme}:`;
    const headers: HeaderMap = { 'user-agent': opts.userAgent ?? DEFAULT_USER_AGENT };
    if (onHost) for (const [k, v] of Object.entries(host.header)) headers[k.toLowerCase()] = v;
    for (const [k, v] of Object.entries(opts.headers ?? {})) headers[k.toLowerCase()] = v;
    const scopes = union(opts.scopes, extraScopes);
    const authorization = host.authorizer ? await host.authorizer.authorize(url.host, scopes, opts.signal) : undefined;
    if (authorization) headers.authorization = authorization;
    const payload = typeof body === 'function' ? await body() : body;
    if (payload instanceof Uint8Array) headers['content-length'] = String(payload.byteLength);
    used = true;
    const res = await send({
      method,
      url,
      headers,
      body: payload,
      agent: onHost ? host.agent : undefined,
      signal: opts.signal,
      timeoutMs: opts.timeoutMs,
    });
    if (payload instanceof Readable && res.status >= 300) {
      // The server answered before taking the whole body: stop sending and release the source.
      payload.unpipe();
      payload.destroy();
    }

    if (res.status === 401 && host.authorizer && authRetries < MAX_AUTH_RETRIES && canReplay()) {
      const outcome = await host.authorizer.handleChallenge(url.host, res, { scopes, sentAuthorization: authorization, signal: opts.signal });
      if (outcome.retry) {
        discard(res);
        authRetries++;
        extraScopes = union(extraScopes, outcome.scopes ?? []);
        continue;
      }
    }
    if (res.status === 405 && method === 'HEAD' && url.pathname.includes('/manifests/')) {
      discard(res);
      method = 'GET';
      continue;
    }
    if ((res.status === 408 || res.status === 429) && busyRetries < MAX_BUSY_RETRIES && canReplay()) {
      discard(res);
      const after = Number(headerValue(res, 'retry-after'));
      await sleep(Number.isFinite(after) && after >= 0 ? Math.min(after * 1000, 5000) : 200 * 2 ** busyRetries, opts.signal);
      busyRetries++;
      continue;
    }
    const location = headerValue(res, 'location');
    if (follow && location && canReplay() && [301, 302, 303, 307, 308].includes(res.status)) {
      if (++redirects > MAX_REDIRECTS) {
        discard(res);
        throw new UnavailableError(`${opts.method} ${redact(url)}: stopped after ${MAX_REDIRECTS} redirects`);
      }
      discard(res);
      url = new URL(location, url);
      if (res.status === 303 || ((res.status === 301 || res.status === 302) && method !== 'GET' && method !== 'HEAD')) {
        method = 'GET';
        body = undefined;
      }
      continue;
    }
    return res;
  }
}

function union(a: readonly string[], b: readonly string[]): string[] {
  return [...new Set([...a, ...b])];
}
