/**
 * Checks parsed TOML against a template of defaults: a known key must carry the default's
 * kind of value (or the error names the key path and what was expected); unknown keys are
 * collected as warnings, never failures, because containerd's own configs carry sections
 * (cri, stream processors) that berth does not implement.
 */
import { InvalidArgumentError } from '../errdefs/errdefs.js';

/** A config value of the wrong type; the message names where and what was expected. */
export class ConfigError extends InvalidArgumentError {}

export type Kind = 'string' | 'integer' | 'number' | 'boolean' | 'array' | 'table';

export function kindOf(v: unknown): Kind | 'other' {
  if (typeof v === 'string') return 'string';
  if (typeof v === 'bigint') return 'integer';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  if (typeof v === 'boolean') return 'boolean';
  if (Array.isArray(v)) return 'array';
  if (v && typeof v === 'object' && !(v instanceof Date)) return 'table';
  return 'other';
}

function describe(v: unknown): string {
  const k = kindOf(v);
  return k === 'string' ? `string ${JSON.stringify(v)}` : k === 'table' ? 'a table' : k === 'array' ? 'an array' : `${k} ${String(v)}`;
}

function expectedName(template: unknown): string {
  const k = kindOf(template);
  if (k === 'integer') return 'an integer';
  if (k === 'number') return 'a number';
  if (k === 'array') {
    const inner = (template as unknown[])[0];
    return inner === undefined ? 'an array' : `an array of ${kindOf(inner)}s`;
  }
  return k === 'table' ? 'a table' : `a ${k}`;
}

/** Whether `value` may stand where `template` is the default. */
function compatible(value: unknown, template: unknown): boolean {
  const want = kindOf(template);
  const got = kindOf(value);
  if (want === got) return true;
  if (want === 'number' && got === 'integer') return true;
  // An empty array default says nothing about its items; a template with an item checks each.
  return false;
}

/**
 * Walks `value` against `template`. Tables named in `openTables` (by key path) are maps whose
 * keys are free (e.g. `plugins`, `timeouts`) and are not checked for unknown keys.
 */
export function checkShape(
  value: Record<string, unknown>,
  template: Record<string, unknown>,
  where: string,
  warnings: string[],
  openTables: ReadonlySet<string> = new Set(),
  prefix = '',
): void {
  for (const [key, v] of Object.entries(value)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (!(key in template)) {
      warnings.push(`${where}: unknown key ${path} ignored`);
      continue;
    }
    const t = template[key];
    if (!compatible(v, t)) {
      throw new ConfigError(`${where}: ${path}: expected ${expectedName(t)}, got ${describe(v)}`);
    }
    if (Array.isArray(t) && t.length > 0) {
      (v as unknown[]).forEach((item, i) => {
        if (!compatible(item, t[0])) throw new ConfigError(`${where}: ${path}[${i}]: expected ${expectedName(t[0])}, got ${describe(item)}`);
      });
    }
    if (kindOf(t) === 'table' && !openTables.has(path)) {
      checkShape(v as Record<string, unknown>, t as Record<string, unknown>, where, warnings, openTables, path);
    }
  }
}

/**
 * Deep merge of a parsed table over a clone of the defaults (arrays and scalars replace).
 * Keys the defaults do not have are dropped (they were reported as warnings), except inside
 * tables whose default is empty: those are free-form maps.
 */
export function mergeOver<T>(defaults: T, value: Record<string, unknown> | undefined): T {
  const out = structuredClone(defaults) as Record<string, unknown>;
  const open = Object.keys(out).length === 0;
  for (const [k, v] of Object.entries(value ?? {})) {
    if (!open && !(k in out)) continue;
    const cur = out[k];
    out[k] = kindOf(cur) === 'table' && kindOf(v) === 'table' ? mergeOver(cur, v as Record<string, unknown>) : v;
  }
  return out as T;
}

/** Converts TOML's bigints (integers beyond 2^53) to numbers where safe, else reports them. */
export function normalizeNumbers(v: unknown, where: string, path = ''): unknown {
  if (typeof v === 'bigint') {
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new ConfigError(`${where}: ${path}: integer ${v} is out of range`);
    }
    return Number(v);
  }
  if (Array.isArray(v)) return v.map((x, i) => normalizeNumbers(x, where, `${path}[${i}]`));
  if (kindOf(v) === 'table') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[k] = normalizeNumbers(x, where, path ? `${path}.${k}` : k);
    return out;
  }
  return v;
}
