/**
 * Loads config.toml the way containerd does: the main file first, then each of its
 * `imports` (globs allowed, relative to the importing file) merged over it in order, so
 * later files win. Version 1 files are mapped to version 2 on the way in.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { checkShape, ConfigError, kindOf, normalizeNumbers } from './shape.js';
import { defaultConfig, type DaemonConfig } from './config.js';

export interface LoadedConfig {
  config: DaemonConfig;
  /** Files read, in merge order. */
  files: string[];
  /** Unknown keys and other non-fatal findings, each naming its file. */
  warnings: string[];
}

/** Tables whose keys are free-form (plugin URIs, timeout names, proxy names). */
const OPEN_TABLES = new Set(['plugins', 'timeouts', 'stream_processors', 'proxy_plugins']);
/** Tables merged key by key across imports, later files winning per key. */
const MERGED_TABLES = ['plugins', 'proxy_plugins', 'stream_processors', 'timeouts'] as const;

let tomlModule: typeof import('@iarna/toml') | undefined;
async function toml() {
  tomlModule ??= (await import('@iarna/toml')).default as unknown as typeof import('@iarna/toml');
  return tomlModule;
}

/** Parses TOML text; syntax errors become ConfigError with file:line:column. */
export async function parseToml(text: string, file: string): Promise<Record<string, unknown>> {
  const { parse } = await toml();
  try {
    return normalizeNumbers(parse(text), file) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const e = err as { line?: number; col?: number; message?: string };
    const firstLine = String(e.message ?? err).split('\n')[0]!.replace(/ at row \d+, col \d+, pos \d+:?$/, '');
    if (typeof e.line === 'number') {
      throw new ConfigError(`${file}:${e.line + 1}:${(e.col ?? 0) + 1}: invalid TOML: ${firstLine}`);
    }
    throw new ConfigError(`${file}: invalid TOML: ${firstLine}`);
  }
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(`${file}: cannot read config file (${code ?? String(err)})`);
  }
}

/**
 * Expands `*`, `?` and `[...]` classes in the last path component (the form containerd's
 * imports use, with Go's filepath.Match syntax; `\\` escapes). A malformed pattern throws
 * "syntax error in pattern", as Go's ErrBadPattern.
 */
export function expandGlob(pattern: string): string[] {
  if (!/[*?[\\]/.test(pattern)) return [pattern];
  const dir = dirname(pattern);
  const re = globRegExp(basename(pattern));
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((n) => re.test(n)).sort().map((n) => join(dir, n));
}

function globRegExp(glob: string): RegExp {
  const bad = () => new Error('syntax error in pattern');
  const literal = (c: string) => c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  let re = '^';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '\\') {
      if (i + 1 >= glob.length) throw bad();
      re += literal(glob[++i]!);
    } else if (c === '[') {
      let j = i + 1;
      let cls = '';
      if (glob[j] === '^') {
        cls = '^';
        j++;
      }
      const start = j;
      for (; j < glob.length && glob[j] !== ']'; j++) {
        const ch = glob[j]!;
        if (ch === '\\') {
          if (j + 1 >= glob.length) throw bad();
          cls += literal(glob[++j]!);
        } else {
          // '-' passes through unescaped: a range between two characters, a literal at either end.
          cls += literal(ch);
        }
      }
      if (j >= glob.length || j === start) throw bad();
      re += `[${cls}]`;
      i = j;
    } else {
      re += literal(c);
    }
  }
  try {
    return new RegExp(`${re}$`);
  } catch {
    // A range whose ends are out of order ("[z-a]").
    throw bad();
  }
}

/** Maps a version 1 file to version 2: plugin sections and plugin lists keyed by bare id. */
function migrateV1(raw: Record<string, unknown>, file: string, warnings: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = { ...raw, version: 2 };
  // v1 keys are plugin ids; the kernel resolves them against registrations (see resolveV1Ids).
  const plugins = (raw.plugins ?? {}) as Record<string, unknown>;
  out.plugins = Object.fromEntries(Object.entries(plugins).map(([id, v]) => [`v1:${id}`, v]));
  for (const key of ['disabled_plugins', 'required_plugins'] as const) {
    if (Array.isArray(raw[key])) out[key] = (raw[key] as string[]).map((id) => `v1:${id}`);
  }
  warnings.push(`${file}: version 1 config migrated to version 2`);
  return out;
}

/** Merges one loaded file over the accumulated config (containerd's mergeConfig rules). */
function mergeFile(into: Record<string, unknown>, from: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(from)) {
    if ((MERGED_TABLES as readonly string[]).includes(k)) {
      into[k] = { ...((into[k] as object) ?? {}), ...(v as object) };
    } else if (Array.isArray(v) && Array.isArray(into[k]) && k !== 'imports') {
      into[k] = [...new Set([...(into[k] as unknown[]), ...v])];
    } else if (kindOf(v) === 'table' && kindOf(into[k]) === 'table') {
      into[k] = { ...(into[k] as object), ...(v as object) };
    } else {
      into[k] = v;
    }
  }
}

/**
 * Reads `path` and its imports. A missing file is an error only when `explicit`
 * (the user named it); otherwise the embedded defaults are used.
 */
export async function loadConfig(path: string | undefined, opts: { explicit: boolean }): Promise<LoadedConfig> {
  const warnings: string[] = [];
  const files: string[] = [];
  const merged: Record<string, unknown> = {};
  if (path && (opts.explicit || existsSync(path))) {
    const pending = [resolve(path)];
    const seen = new Set<string>();
    while (pending.length) {
      const file = pending.shift()!;
      if (seen.has(file)) continue;
      seen.add(file);
      let raw = await parseToml(readText(file), file);
      checkStringLists(raw, file);
      const version = raw.version === undefined ? 1 : raw.version;
      if (version !== 1 && version !== 2 && version !== 0) {
        throw new ConfigError(`${file}: version: expected 1 or 2, got ${JSON.stringify(version)}`);
      }
      if (version !== 2) raw = migrateV1(raw, file, warnings);
      checkShape(raw, defaultConfig() as unknown as Record<string, unknown>, file, warnings, OPEN_TABLES);
      checkOpenTables(raw, file);
      files.push(file);
      const imports = ((raw.imports as string[] | undefined) ?? []).flatMap((p) => {
        try {
          return expandGlob(isAbsolute(p) ? p : resolve(dirname(file), p));
        } catch (err) {
          throw new ConfigError(`${file}: imports: bad pattern ${JSON.stringify(p)}: ${(err as Error).message}`);
        }
      });
      mergeFile(merged, { ...raw, imports: undefined });
      pending.push(...imports);
    }
  }
  delete merged.imports;
  const config = defaultConfig();
  mergeFile(config as unknown as Record<string, unknown>, merged);
  config.imports = files.slice(1);
  validateDaemonConfig(config, files[0] ?? 'defaults');
  return { config, files, warnings };
}

/**
 * Lists whose defaults are empty (so checkShape cannot see their item type) but whose items
 * are used as strings: a number there must be a ConfigError, not a TypeError at startup.
 */
function checkStringLists(raw: Record<string, unknown>, file: string): void {
  for (const key of ['imports', 'disabled_plugins', 'required_plugins'] as const) {
    const list = raw[key];
    if (!Array.isArray(list)) continue;
    list.forEach((item, i) => {
      if (typeof item !== 'string') throw new ConfigError(`${file}: ${key}[${i}]: expected a string, got ${kindOf(item)}`);
    });
  }
}

function checkOpenTables(raw: Record<string, unknown>, file: string): void {
  for (const [name, section] of Object.entries((raw.plugins ?? {}) as Record<string, unknown>)) {
    if (kindOf(section) !== 'table') throw new ConfigError(`${file}: plugins."${name}": expected a table, got ${kindOf(section)}`);
  }
  for (const [name, section] of Object.entries((raw.timeouts ?? {}) as Record<string, unknown>)) {
    if (typeof section !== 'string') throw new ConfigError(`${file}: timeouts."${name}": expected a duration string`);
  }
  for (const [name, p] of Object.entries((raw.proxy_plugins ?? {}) as Record<string, unknown>)) {
    const pp = p as Record<string, unknown>;
    if (kindOf(p) !== 'table' || typeof pp.type !== 'string' || typeof pp.address !== 'string') {
      throw new ConfigError(`${file}: proxy_plugins.${name}: expected a table with string keys type and address`);
    }
  }
}

/** Cross-field checks containerd makes at startup. */
export function validateDaemonConfig(cfg: DaemonConfig, where: string): void {
  if (!cfg.root) throw new ConfigError(`${where}: root: must not be empty`);
  if (!cfg.state) throw new ConfigError(`${where}: state: must not be empty`);
  if (resolve(cfg.root) === resolve(cfg.state)) throw new ConfigError(`${where}: root and state must be different paths`);
  if (!cfg.grpc.address) throw new ConfigError(`${where}: grpc.address: must not be empty`);
  for (const key of ['disabled_plugins', 'required_plugins'] as const) {
    for (const uri of cfg[key]) {
      if (!uri.startsWith('v1:') && uri.split('.').length < 4) {
        throw new ConfigError(`${where}: ${key}: ${JSON.stringify(uri)} is not a plugin URI (<type>.<id>, e.g. io.containerd.snapshotter.v1.btrfs)`);
      }
    }
  }
  const level = cfg.debug.level;
  if (level && !['trace', 'debug', 'info', 'warn', 'warning', 'error', 'fatal', 'panic'].includes(level)) {
    throw new ConfigError(`${where}: debug.level: expected one of trace, debug, info, warn, error, fatal, panic; got ${JSON.stringify(level)}`);
  }
  if (cfg.debug.format && !['text', 'json'].includes(cfg.debug.format)) {
    throw new ConfigError(`${where}: debug.format: expected "text" or "json", got ${JSON.stringify(cfg.debug.format)}`);
  }
}
