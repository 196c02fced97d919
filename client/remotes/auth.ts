/**
 * Registry authorization: WWW-Authenticate parsing, bearer token fetches (anonymous or with
 * credentials, GET with a form POST fallback), a per-host/per-scope token cache, and HTTP Basic.
 *
 * The flow, per host: a request goes out with whatever the authorizer already knows (nothing at
 * first); a 401 carries challenges; the authorizer remembers the host's scheme (Bearer realm and
 * service, or Basic) and the request is retried, now with a token for the request's scopes plus
 * those the challenge asked for. Later requests to the host get a token up front.
 */
import type { Agent } from 'node:http';
import { PermissionDeniedError, UnavailableError, InvalidArgumentError } from '../../core/errdefs/errdefs.js';
import {
  DEFAULT_TIMEOUT_MS,
  DEFAULT_USER_AGENT,
  headerValues,
  parseRegistryErrors,
  readText,
  redact,
  send,
  type ChallengeOutcome,
  type HeaderMap,
  type RawResponse,
  type RequestAuthorizer,
} from './http.js';
import type { Credentials, CredentialsCallback } from './types.js';

/** One challenge from a WWW-Authenticate header; scheme is lowercased ("bearer", "basic", …). */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;

const schemeRank = (scheme: string) => (scheme === 'bearer' ? 0 : scheme === 'basic' ? 2 : scheme === 'digest' ? 1 : 3);

/**
 * Parses WWW-Authenticate values into challenges. Accepts several headers and several challenges
 * in one header ("Basic realm=x, Bearer realm=y"); parameter names are lowercased, quoted values
 * unescaped. Challenges come back strongest first: Bearer, then Digest, then Basic, then others.
 */
export function parseWWWAuthenticate(values: string | readonly string[]): Challenge[] {
  const out: Challenge[] = [];
  for (const value of typeof values === 'string' ? [values] : values) {
    let i = 0;
    let current: Challenge | undefined;
    const skip = (re: RegExp) => {
      while (i < value.length && re.test(value[i])) i++;
    };
    const token = () => {
      const start = i;
      while (i < value.length && TCHAR.test(value[i])) i++;
      return value.slice(start, i);
    };
    while (i < value.length) {
      skip(/[\s,]/);
      const name = token();
      if (!name) {
        if (i < value.length) i++; // stray character: skip it
        continue;
      }
      const afterName = i;
      skip(/[ \t]/);
      if (value[i] === '=' && current) {
        i++;
        skip(/[ \t]/);
        let v: string;
        if (value[i] === '"') {
          i++;
          let s = '';
          while (i < value.length && value[i] !== '"') {
            if (value[i] === '\\' && i + 1 < value.length) i++;
            s += value[i++];
          }
          i++; // closing quote
          v = s;
        } else {
          // Lenient: an unquoted value runs to the next comma or space (realms are often URLs).
          const start = i;
          while (i < value.length && value[i] !== ',' && !/\s/.test(value[i])) i++;
          v = value.slice(start, i);
        }
        current.params[name.toLowerCase()] = v;
        continue;
      }
      if (value[i] === '=' && !current) {
        // A parameter before any scheme: malformed; skip its value.
        i++;
        skip(/[ \t]/);
        if (value[i] === '"') {
          i = value.indexOf('"', i + 1);
          i = i < 0 ? value.length : i + 1;
        } else token();
        continue;
      }
      i = afterName;
      current = { scheme: name.toLowerCase(), params: {} };
      out.push(current);
      const beforeSpace = i;
      skip(/[ \t]/);
      if (i > beforeSpace) {
        // token68 data after the scheme ("Negotiate abc==") is not used by registries: skip it.
        const m = /^[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(?:,|$))/.exec(value.slice(i));
        if (m) i += m[0].length;
      }
    }
  }
  return out
    .map((c, idx) => ({ c, idx }))
    .sort((a, b) => schemeRank(a.c.scheme) - schemeRank(b.c.scheme) || a.idx - b.idx)
    .map(({ c }) => c);
}

/** The scopes a challenge names (space-separated "scope" parameter). */
export function challengeScopes(challenge: Challenge): string[] {
  return (challenge.params.scope ?? '').split(' ').filter(Boolean);
}

/** The token scope for a repository: "repository:<repo>:pull" or ":pull,push". */
export function repositoryScope(repository: string, push = false): string {
  return `repository:${repository}:${push ? 'pull,push' : 'pull'}`;
}

export interface TokenRequest {
  realm: string;
  service?: string;
  scopes: readonly string[];
  /** Omitted: anonymous token. Empty username with a secret: identity (refresh) token. */
  credentials?: Credentials;
  clientId?: string;
  headers?: HeaderMap;
  /** Agent for https realms (custom CA / skip_verify); node's global agent otherwise. */
  agent?: Agent;
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface TokenResponse {
  token: string;
  /** Lifetime in seconds (at least 60, as the token spec says to assume). */
  expiresIn: number;
  issuedAt: Date;
  refreshToken?: string;
}

/**
 * Fetches a bearer token from `realm`. Anonymous and username/password requests use
 * GET ?service=…&scope=… (Basic credentials when given); when GET is refused (404/405) and
 * credentials exist, an OAuth2 form POST (grant_type=password) is tried. An identity token
 * (empty username) is exchanged with a POST grant_type=refresh_token.
 */
export async function fetchToken(req: TokenRequest): Promise<TokenResponse> {
  let realm: URL;
  try {
    realm = new URL(req.realm);
  } catch {
    throw new InvalidArgumentError(`invalid token realm "${req.realm}"`);
  }
  if (realm.protocol !== 'http:' && realm.protocol !== 'https:') throw new InvalidArgumentError(`invalid token realm "${req.realm}": not http(s)`);
  const creds = req.credentials && req.credentials.secret ? req.credentials : undefined;
  if (creds && creds.username === '') return postToken(realm, req, { grant_type: 'refresh_token', refresh_token: creds.secret });

  const url = new URL(realm);
  if (req.service) url.searchParams.append('service', req.service);
  for (const s of req.scopes) url.searchParams.append('scope', s);
  const headers: HeaderMap = { 'user-agent': DEFAULT_USER_AGENT, accept: 'application/json', ...lower(req.headers) };
  if (creds) headers.authorization = basicHeader(creds);
  const res = await send({
    method: 'GET',
    url,
    headers,
    agent: url.protocol === 'https:' ? req.agent : undefined,
    signal: req.signal,
    timeoutMs: req.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  });
  if (creds && (res.status === 404 || res.status === 405)) {
    res.body.resume();
    return postToken(realm, req, { grant_type: 'password', username: creds.username, password: creds.secret });
  }
  return decodeTokenResponse(res, realm);
}

async function postToken(realm: URL, req: TokenRequest, grant: Record<string, string>): Promise<TokenResponse> {
  const form = new URLSearchParams();
  if (req.scopes.length > 0) form.set('scope', req.scopes.join(' '));
  if (req.service) form.set('service', req.service);
  form.set('client_id', req.clientId ?? 'berth');
  for (const [k, v] of Object.entries(grant)) form.set(k, v);
  const res = await send({
    method: 'POST',
    url: realm,
    headers: {
      'user-agent': DEFAULT_USER_AGENT,
      accept: 'application/json',
      ...lower(req.headers),
      'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
    },
    body: Buffer.from(form.toString()),
    agent: realm.protocol === 'https:' ? req.agent : undefined,
    signal: req.signal,
    timeoutMs: req.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  });
  return decodeTokenResponse(res, realm);
}

async function decodeTokenResponse(res: RawResponse, realm: URL): Promise<TokenResponse> {
  const text = await readText(res, 1024 * 1024);
  if (res.status < 200 || res.status >= 300) {
    const entries = parseRegistryErrors(text);
    const detail = entries.length ? ` - ${entries.map((e) => `${e.code}: ${e.message ?? ''}`).join('; ')}` : '';
    const message = `fetching token from ${redact(realm)}: unexpected status ${res.status} ${res.statusText}${detail}`;
    throw res.status === 401 || res.status === 403 ? new PermissionDeniedError(message) : new UnavailableError(message);
  }
  let body: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown; refresh_token?: unknown };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    throw new UnavailableError(`fetching token from ${redact(realm)}: response is not JSON`);
  }
  const token = typeof body.access_token === 'string' && body.access_token ? body.access_token : body.token;
  if (typeof token !== 'string' || token === '') {
    throw new UnavailableError(`fetching token from ${redact(realm)}: the authorization server did not include a token`);
  }
  const expiresIn = typeof body.expires_in === 'number' && body.expires_in >= 60 ? body.expires_in : 60;
  const issued = typeof body.issued_at === 'string' ? new Date(body.issued_at) : new Date();
  const out: TokenResponse = { token, expiresIn, issuedAt: Number.isNaN(issued.getTime()) ? new Date() : issued };
  if (typeof body.refresh_token === 'string' && body.refresh_token) out.refreshToken = body.refresh_token;
  return out;
}

export function basicHeader(creds: Credentials): string {
  return `Basic ${Buffer.from(`${creds.username}:${creds.secret}`).toString('base64')}`;
}

function lower(headers: HeaderMap | undefined): HeaderMap {
  const out: HeaderMap = {};
  for (const [k, v] of Object.entries(headers ?? {})) out[k.toLowerCase()] = v;
  return out;
}

type HostHandler =
  | { scheme: 'bearer'; realm: string; service?: string; credentials?: Credentials }
  | { scheme: 'basic'; credentials: Credentials };

interface CachedToken {
  promise: Promise<TokenResponse>;
  /** ms epoch after which a new token is fetched; Infinity while the fetch is in flight. */
  expiresAt: number;
  token?: string;
}

export interface AuthorizerOptions {
  /** Credentials per registry host (host[:port] as in the request URL). */
  credentials?: CredentialsCallback;
  /** Extra headers for token requests. */
  headers?: HeaderMap;
  /** Agent for https token realms. */
  agent?: Agent;
  clientId?: string;
  timeoutMs?: number;
  /** Refresh tokens this many ms before they expire (default 10 s). */
  expiryMarginMs?: number;
}

/** The authorizer used by the registry client; share one across hosts that share credentials. */
export class Authorizer implements RequestAuthorizer {
  private readonly handlers = new Map<string, HostHandler>();
  private readonly tokens = new Map<string, CachedToken>();
  /** Token fetches performed (for diagnostics and tests). */
  tokenFetches = 0;

  constructor(private readonly options: AuthorizerOptions = {}) {}

  /** Which scheme the authorizer uses for `host` (undefined until a challenge was seen). */
  schemeFor(host: string): 'bearer' | 'basic' | undefined {
    return this.handlers.get(host)?.scheme;
  }

  async authorize(host: string, scopes: readonly string[], signal?: AbortSignal): Promise<string | undefined> {
    const handler = this.handlers.get(host);
    if (!handler) return undefined;
    if (handler.scheme === 'basic') return basicHeader(handler.credentials);
    const sorted = [...new Set(scopes)].sort();
    const key = [host, handler.realm, handler.service ?? '', sorted.join(' ')].join('\n');
    const cached = this.tokens.get(key);
    if (cached && Date.now() < cached.expiresAt) return `Bearer ${(await cached.promise).token}`;
    const entry: CachedToken = { promise: Promise.resolve() as unknown as Promise<TokenResponse>, expiresAt: Infinity };
    entry.promise = (async () => {
      this.tokenFetches++;
      return fetchToken({
        realm: handler.realm,
        service: handler.service,
        scopes: sorted,
        credentials: handler.credentials,
        clientId: this.options.clientId,
        headers: this.options.headers,
        agent: this.options.agent,
        signal,
        timeoutMs: this.options.timeoutMs,
      });
    })();
    this.tokens.set(key, entry);
    try {
      const res = await entry.promise;
      const margin = this.options.expiryMarginMs ?? 10_000;
      entry.token = res.token;
      entry.expiresAt = Math.max(Date.now() + 1000, res.issuedAt.getTime() + res.expiresIn * 1000 - margin);
      return `Bearer ${res.token}`;
    } catch (err) {
      if (this.tokens.get(key) === entry) this.tokens.delete(key);
      throw err;
    }
  }

  async handleChallenge(
    host: string,
    res: Pick<RawResponse, 'rawHeaders' | 'status'>,
    context: { scopes: readonly string[]; sentAuthorization?: string; signal?: AbortSignal },
  ): Promise<ChallengeOutcome> {
    const challenges = parseWWWAuthenticate(headerValues(res, 'www-authenticate'));
    for (const c of challenges) {
      if (c.scheme === 'bearer') {
        const realm = c.params.realm;
        if (!realm) continue;
        const wanted = challengeScopes(c);
        const sentBearer = context.sentAuthorization?.startsWith('Bearer ');
        if (sentBearer) {
          // The token we sent was refused: forget it so the retry fetches a fresh one.
          this.forgetToken(context.sentAuthorization!.slice('Bearer '.length));
          const missing = wanted.filter((s) => !context.scopes.includes(s));
          if (c.params.error && c.params.error !== 'invalid_token' && missing.length === 0) {
            throw new PermissionDeniedError(
              `authorization failed for ${host}: ${c.params.error}${c.params.error_description ? ` (${c.params.error_description})` : ''}`,
            );
          }
        }
        const existing = this.handlers.get(host);
        if (!existing || existing.scheme !== 'bearer' || existing.realm !== realm || existing.service !== c.params.service) {
          const credentials = await this.options.credentials?.(host);
          this.handlers.set(host, { scheme: 'bearer', realm, service: c.params.service, credentials });
        }
        return { retry: true, scopes: wanted };
      }
      if (c.scheme === 'basic') {
        const credentials = await this.options.credentials?.(host);
        if (!credentials || !credentials.username || !credentials.secret) continue;
        if (context.sentAuthorization === basicHeader(credentials)) {
          throw new PermissionDeniedError(`authorization failed for ${host}: credentials for "${credentials.username}" were rejected`);
        }
        this.handlers.set(host, { scheme: 'basic', credentials });
        return { retry: true };
      }
    }
    return { retry: false };
  }

  private forgetToken(token: string): void {
    for (const [key, entry] of this.tokens) if (entry.token === token) this.tokens.delete(key);
  }
}
