/**
 * Registry host resolution, compatible with containerd's `config_path` hosts directories:
 *
 *   <config_path>/<host>/hosts.toml         (for "host:port" the directory "host_port_" is tried
 *   <config_path>/_default/hosts.toml        first, then "host:port"; then "_default")
 *
 *   server = "https://registry.example.com"       # the upstream; default https://<host>
 *   capabilities = ["pull", "resolve", "push"]
 *   [host."https://mirror.example.com"]           # tried before the server, in file order
 *     capabilities = ["pull", "resolve"]
 *     skip_verify = false
 *     ca = "/etc/certs/mirror.pem"                 # or a list; relative paths are relative to the directory
 *     client = [["client.cert", "client.key"]]     # or "cert+key.pem", or a list of either
 *     header = { x-custom = "v" }                  # string or list of strings
 *     override_path = false                        # true: the URL path is the API root (no "/v2" added)
 *
 * Without hosts.toml a directory's *.crt files are trusted CAs and *.cert/*.key are client pairs.
 * Without any directory the namespace is served by https://<host> (docker.io by
 * registry-1.docker.io). Plain HTTP is used only when asked: the plainHttp option for the default
 * server, or an explicit http:// URL in hosts.toml.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { isAbsolute, join } from 'node:path';
import * as TOML from '@iarna/toml';
import { InvalidArgumentError, messageOf } from '../../core/errdefs/errdefs.js';
import { Authorizer } from './auth.js';
import { defaultSecureContext, trustedCertificates } from './trust.js';
import {
  ALL_CAPABILITIES,
  type CredentialsCallback,
  type HostCapability,
  type HostTls,
  type RegistryHost,
  type RegistryHosts,
} from './types.js';

/** One endpoint as written in hosts.toml (file paths not yet read). `host` is absent for the implicit default server. */
export interface HostFileEntry {
  scheme?: 'http' | 'https';
  host?: string;
  path?: string;
  capabilities: HostCapability[];
  /** Absolute paths of CA certificate files. */
  ca?: string[];
  /** Absolute paths of client [certificate, key] files; an empty key means the key is in the certificate file. */
  client?: [cert: string, key: string][];
  skipVerify?: boolean;
  header?: Record<string, string[]>;
}

/** The namespace the default server of "docker.io" lives at. */
export function defaultHost(namespace: string): string {
  return namespace === 'docker.io' ? 'registry-1.docker.io' : namespace;
}

/** True for localhost, 127.0.0.0/8 and ::1, with or without a port. */
export function isLocalhost(host: string): boolean {
  let h = host;
  const bracket = /^\[([^\]]+)\](?::\d+)?$/.exec(h);
  if (bracket) h = bracket[1];
  else if (h.split(':').length === 2) h = h.slice(0, h.indexOf(':'));
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1';
  return false;
}

function tomlError(where: string, problem: string): never {
  throw new InvalidArgumentError(`${where}: ${problem}`);
}

const ENTRY_KEYS = new Set(['capabilities', 'ca', 'client', 'skip_verify', 'header', 'override_path']);

/**
 * Parses the text of a hosts.toml. Entries come back in the order they are tried: the
 * [host."…"] tables in file order, then the `server` (an entry without `host` when no server is
 * named). Relative certificate paths are resolved against `baseDir`.
 */
export function parseHostsToml(text: string, baseDir = '.', where = 'hosts.toml'): HostFileEntry[] {
  let doc: Record<string, unknown>;
  try {
    doc = TOML.parse(text) as Record<string, unknown>;
  } catch (err) {
    tomlError(where, `invalid TOML: ${messageOf(err)}`);
  }
  const out: HostFileEntry[] = [];
  const hostTables = doc.host;
  if (hostTables !== undefined) {
    if (typeof hostTables !== 'object' || hostTables === null || Array.isArray(hostTables)) tomlError(where, '"host" must be a table of host tables');
    for (const [url, table] of Object.entries(hostTables as Record<string, unknown>)) {
      if (typeof table !== 'object' || table === null || Array.isArray(table)) tomlError(where, `host "${url}" must be a table`);
      out.push(parseEntry(url, table as Record<string, unknown>, baseDir, `${where}: host "${url}"`));
    }
  }
  const server = doc.server;
  if (server !== undefined && typeof server !== 'string') tomlError(where, '"server" must be a string');
  const top: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc)) if (ENTRY_KEYS.has(k)) top[k] = v;
  out.push(parseEntry(server || undefined, top, baseDir, server ? `${where}: server "${server}"` : where));
  return out;
}

function parseEntry(server: string | undefined, t: Record<string, unknown>, baseDir: string, where: string): HostFileEntry {
  const entry: HostFileEntry = { capabilities: [...ALL_CAPABILITIES] };
  const overridePath = t.override_path;
  if (overridePath !== undefined && typeof overridePath !== 'boolean') tomlError(where, '"override_path" must be a boolean');
  if (server !== undefined) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(server) && !/^https?:\/\//i.test(server)) tomlError(where, `unsupported scheme in "${server}"`);
    const withScheme = /^https?:\/\//i.test(server) ? server : `https://${server}`;
    let u: URL;
    try {
      u = new URL(withScheme);
    } catch {
      tomlError(where, `cannot parse server URL "${server}"`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') tomlError(where, `unsupported scheme in "${server}"`);
    entry.scheme = u.protocol === 'http:' ? 'http' : 'https';
    entry.host = u.host;
    let p = cleanPath(u.pathname);
    if (p === '/') p = '';
    if (!overridePath && !p.endsWith('/v2')) p = `${p}/v2`;
    entry.path = p;
  }
  if (t.capabilities !== undefined) {
    if (!Array.isArray(t.capabilities)) tomlError(where, '"capabilities" must be a list');
    const caps = new Set<HostCapability>();
    for (const c of t.capabilities as unknown[]) {
      const v = typeof c === 'string' ? c.toLowerCase() : c;
      if (v !== 'pull' && v !== 'resolve' && v !== 'push') tomlError(where, `unknown capability ${JSON.stringify(c)}`);
      caps.add(v);
    }
    entry.capabilities = ALL_CAPABILITIES.filter((c) => caps.has(c));
  }
  if (t.skip_verify !== undefined) {
    if (typeof t.skip_verify !== 'boolean') tomlError(where, '"skip_verify" must be a boolean');
    entry.skipVerify = t.skip_verify;
  }
  if (t.ca !== undefined) {
    const list = typeof t.ca === 'string' ? [t.ca] : t.ca;
    if (!Array.isArray(list) || !list.every((x) => typeof x === 'string')) tomlError(where, '"ca" must be a path or a list of paths');
    entry.ca = (list as string[]).map((p) => absolute(p, baseDir));
  }
  if (t.client !== undefined) {
    const list = typeof t.client === 'string' ? [t.client] : t.client;
    if (!Array.isArray(list)) tomlError(where, '"client" must be a path, a [cert, key] pair or a list of those');
    entry.client = [];
    // A flat pair of two strings is ambiguous with a list of two certificate files; containerd reads
    // it as two certificate files, and so do we. Pairs are written as nested lists.
    for (const item of list as unknown[]) {
      if (typeof item === 'string') entry.client.push([absolute(item, baseDir), '']);
      else if (Array.isArray(item) && item.length === 2 && item.every((x) => typeof x === 'string')) {
        entry.client.push([absolute(item[0] as string, baseDir), absolute(item[1] as string, baseDir)]);
      } else tomlError(where, `invalid "client" entry ${JSON.stringify(item)}`);
    }
  }
  if (t.header !== undefined) {
    if (typeof t.header !== 'object' || t.header === null || Array.isArray(t.header)) tomlError(where, '"header" must be a table');
    entry.header = {};
    for (const [k, v] of Object.entries(t.header as Record<string, unknown>)) {
      if (typeof v === 'string') entry.header[k] = [v];
      else if (Array.isArray(v) && v.every((x) => typeof x === 'string')) entry.header[k] = v as string[];
      else tomlError(where, `header "${k}" must be a string or a list of strings`);
    }
  }
  return entry;
}

function cleanPath(p: string): string {
  const parts: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') parts.pop();
    else parts.push(seg);
  }
  return `/${parts.join('/')}`;
}

function absolute(p: string, base: string): string {
  return isAbsolute(p) ? p : join(base, p);
}

/** The directories consulted for `host` under `root`, in order. */
export function hostDirectoryCandidates(root: string, host: string): string[] {
  const out: string[] = [];
  const idx = host.lastIndexOf(':');
  if (idx > 0 && !host.endsWith(']')) out.push(join(root, `${host.slice(0, idx)}_${host.slice(idx + 1)}_`));
  out.push(join(root, host), join(root, '_default'));
  return out;
}

/** The first existing hosts directory for `host` under `root`, or undefined. */
export async function findHostDirectory(root: string, host: string): Promise<string | undefined> {
  for (const dir of hostDirectoryCandidates(root, host)) {
    try {
      if ((await stat(dir)).isDirectory()) return dir;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return undefined;
}

/** Reads a hosts directory: its hosts.toml, or else its certificate files as settings of the default server. */
export async function loadHostDirectory(dir: string): Promise<HostFileEntry[]> {
  const file = join(dir, 'hosts.toml');
  let text: string | undefined;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (text !== undefined && text.trim() !== '') return parseHostsToml(text, dir, file);
  const entry: HostFileEntry = { capabilities: [...ALL_CAPABILITIES] };
  const names = (await readdir(dir, { withFileTypes: true })).filter((d) => !d.isDirectory()).map((d) => d.name).sort();
  for (const name of names) {
    if (name.endsWith('.crt')) (entry.ca ??= []).push(join(dir, name));
    if (name.endsWith('.cert')) {
      const key = `${name.slice(0, -'.cert'.length)}.key`;
      (entry.client ??= []).push([join(dir, name), names.includes(key) ? join(dir, key) : '']);
    }
  }
  return [entry];
}

export interface HostsOptions {
  /** containerd's config_path: a directory of per-host directories. */
  configPath?: string;
  /**
   * Use plain HTTP for the default server: everywhere (true), nowhere (false), or for the hosts
   * the function accepts. Unset, as containerd's ConfigureHosts: localhost and 127.0.0.0/8.
   */
  plainHttp?: boolean | ((host: string) => boolean);
  credentials?: CredentialsCallback;
  /** Headers sent to every host (before each host's own headers). */
  headers?: Record<string, string | string[]>;
  timeoutMs?: number;
}

/**
 * Builds the host lookup used by the resolver. Connection pools and the authorizer (with its token
 * cache) are shared between lookups; hosts with their own TLS settings get their own pool and authorizer.
 */
export function configureHosts(options: HostsOptions = {}): RegistryHosts {
  const httpAgent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 16, secureContext: defaultSecureContext() });
  const authorizer = new Authorizer({ credentials: options.credentials, timeoutMs: options.timeoutMs });
  const tlsPools = new Map<string, { agent: https.Agent; authorizer: Authorizer }>();
  const baseHeaders: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(options.headers ?? {})) baseHeaders[k] = Array.isArray(v) ? v : [v];
  const plain = (host: string) =>
    typeof options.plainHttp === 'function' ? options.plainHttp(host) : options.plainHttp ?? isLocalhost(host);

  return async (namespace: string): Promise<RegistryHost[]> => {
    let entries: HostFileEntry[] | undefined;
    if (options.configPath) {
      const dir = await findHostDirectory(options.configPath, namespace);
      if (dir) entries = await loadHostDirectory(dir);
    }
    entries ??= [{ capabilities: [...ALL_CAPABILITIES] }];
    const out: RegistryHost[] = [];
    for (const e of entries) {
      const isDefault = e.host === undefined;
      const host = e.host ?? defaultHost(namespace);
      const scheme = e.scheme ?? (isDefault && namespace !== 'docker.io' && plain(namespace) ? 'http' : 'https');
      const tls = await loadTls(e);
      const header: Record<string, string[]> = { ...baseHeaders };
      for (const [k, v] of Object.entries(e.header ?? {})) header[k] = [...(header[k] ?? []), ...v];
      const rh: RegistryHost = {
        scheme,
        host,
        path: e.path ?? '/v2',
        capabilities: e.capabilities,
        header,
        agent: scheme === 'http' ? httpAgent : httpsAgent,
        authorizer,
      };
      if (tls) {
        rh.tls = tls;
        if (scheme === 'https') {
          const key = JSON.stringify(tls);
          let pool = tlsPools.get(key);
          if (!pool) {
            const agent = new https.Agent({
              keepAlive: true,
              maxSockets: 16,
              ca: trustedCertificates(tls.ca ?? []),
              cert: tls.clientCerts?.map((c) => c.cert),
              key: tls.clientCerts?.map((c) => c.key),
              rejectUnauthorized: !tls.skipVerify,
            });
            pool = { agent, authorizer: new Authorizer({ credentials: options.credentials, agent, timeoutMs: options.timeoutMs }) };
            tlsPools.set(key, pool);
          }
          rh.agent = pool.agent;
          rh.authorizer = pool.authorizer;
        }
      }
      out.push(rh);
    }
    return out;
  };
}

async function loadTls(e: HostFileEntry): Promise<HostTls | undefined> {
  if (e.ca === undefined && e.client === undefined && e.skipVerify === undefined) return undefined;
  const tls: HostTls = {};
  if (e.skipVerify !== undefined) tls.skipVerify = e.skipVerify;
  if (e.ca) {
    tls.ca = await Promise.all(
      e.ca.map((f) =>
        readFile(f, 'utf8').catch((err: unknown) => {
          throw new InvalidArgumentError(`unable to read CA certificate "${f}": ${messageOf(err)}`);
        }),
      ),
    );
  }
  if (e.client) {
    tls.clientCerts = [];
    for (const [certFile, keyFile] of e.client) {
      const read = (f: string) =>
        readFile(f, 'utf8').catch((err: unknown) => {
          throw new InvalidArgumentError(`unable to read client certificate file "${f}": ${messageOf(err)}`);
        });
      const cert = await read(certFile);
      const key = keyFile ? await read(keyFile) : cert;
      tls.clientCerts.push({ cert, key });
    }
  }
  return tls;
}
