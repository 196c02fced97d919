// PLUGINS.md's table of built-in plugins must agree with plugins/builtins.ts: one row per
// registration, in builtins order, with its folder, requires, config keys and their defaults.
// Everything is derived from the registrations at test time, so adding a plugin to builtins.ts
// only means adding its row; a failure prints the row to add.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { uriOf, type Registration } from '../../core/plugin/types.js';
import { builtins } from '../../plugins/builtins.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const NONE = '—';

interface Row {
  line: number;
  uri: string;
  folder: string;
  requires: string[];
  config: Map<string, string>;
  exports: string[];
}

/** Cell items: `a`<br>`b` → ['a', 'b']; the dash → []. */
function items(cell: string): string[] {
  const c = cell.trim();
  if (c === NONE || c === '-' || c === '') return [];
  return c.split('<br>').map((s) => {
    const t = s.trim();
    assert.ok(/^`[^`]+`$/.test(t), `cell item ${JSON.stringify(t)} should be one \`code span\``);
    return t.slice(1, -1);
  });
}

function parseTable(md: string): Row[] {
  const lines = md.split('\n');
  const start = lines.findIndex((l) => /^## Built-in plugins\s*$/.test(l));
  assert.ok(start >= 0, 'PLUGINS.md has no "## Built-in plugins" section');
  const header = lines.findIndex((l, i) => i > start && l.startsWith('| URI |'));
  assert.ok(header > start, 'the built-in plugins section has no table starting with "| URI |"');
  const rows: Row[] = [];
  for (let i = header + 2; i < lines.length && lines[i]!.startsWith('|'); i++) {
    const cells = lines[i]!.split('|').slice(1, -1);
    assert.equal(cells.length, 6, `PLUGINS.md:${i + 1}: expected 6 cells, got ${cells.length}`);
    const [uri, folder, requires, config, exports] = cells.map((c) => c.trim()) as [string, string, string, string, string];
    const one = (cell: string, what: string) => {
      const v = items(cell);
      assert.equal(v.length, 1, `PLUGINS.md:${i + 1}: ${what} should be one code span`);
      return v[0]!;
    };
    rows.push({
      line: i + 1,
      uri: one(uri, 'URI'),
      folder: one(folder, 'folder'),
      requires: items(requires),
      config: new Map(items(config).map((kv) => {
        const at = kv.indexOf(' = ');
        assert.ok(at > 0, `PLUGINS.md:${i + 1}: config item ${JSON.stringify(kv)} should read "key = default"`);
        return [kv.slice(0, at), kv.slice(at + 3)] as const;
      })),
      exports: items(exports),
    });
  }
  return rows;
}

/** A default as TOML would spell it (how the table shows it). */
function tomlValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return v.length ? `[${v.map(tomlValue).join(', ')}]` : '[]';
  if (v && typeof v === 'object') return `{ ${Object.entries(v).map(([k, x]) => `${k} = ${tomlValue(x)}`).join(', ')} }`;
  return String(v);
}

/** Registration → the folder of the module that defines it, from the imports of builtins.ts. */
async function foldersOf(): Promise<Map<Registration<any, any>, string>> {
  const src = readFileSync(join(REPO, 'plugins', 'builtins.ts'), 'utf8');
  const out = new Map<Registration<any, any>, string>();
  for (const m of src.matchAll(/^import\s*\{([^}]+)\}\s*from\s*'(\.\/[^']+)';/gm)) {
    const names = m[1]!.split(',').map((n) => n.trim().split(/\s+as\s+/).pop()!).filter(Boolean);
    const file = join(REPO, 'plugins', m[2]!.replace(/\.js$/, '.ts'));
    const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    for (const exported of Object.values(mod)) {
      const reg = builtins.find((r) => r === exported);
      if (reg && names.length) out.set(reg, dirname(file).slice(REPO.length + 1));
    }
  }
  return out;
}

/** The row to paste for a registration (exports and description are for the author to fill in). */
function rowFor(reg: Registration<any, any>, folder: string): string {
  const list = (xs: string[]) => (xs.length ? xs.map((x) => `\`${x}\``).join('<br>') : NONE);
  const config = Object.entries((reg.config?.defaults ?? {}) as Record<string, unknown>).map(([k, v]) => `${k} = ${tomlValue(v)}`);
  return `| \`${uriOf(reg)}\` | \`${folder}\` | ${list(reg.requires ?? [])} | ${list(config)} | ${NONE} | … |`;
}

describe('PLUGINS.md built-in plugins table', () => {
  it('has exactly one row per builtin, in builtins order, each agreeing with its registration', async () => {
    const md = readFileSync(join(REPO, 'PLUGINS.md'), 'utf8');
    const rows = parseTable(md);
    const folders = await foldersOf();
    const problems: string[] = [];

    const byUri = new Map<string, Row>();
    for (const r of rows) {
      if (byUri.has(r.uri)) problems.push(`PLUGINS.md:${r.line}: ${r.uri} is listed twice`);
      byUri.set(r.uri, r);
    }
    const uris = new Set(builtins.map(uriOf));
    for (const r of rows) {
      if (!uris.has(r.uri)) problems.push(`PLUGINS.md:${r.line}: ${r.uri} is not in plugins/builtins.ts; remove the row`);
    }

    for (const reg of builtins) {
      const uri = uriOf(reg);
      const folder = folders.get(reg) ?? '?';
      const row = byUri.get(uri);
      if (!row) {
        problems.push(`${uri} is missing; add:\n${rowFor(reg, folder)}`);
        continue;
      }
      const at = `PLUGINS.md:${row.line}: ${uri}`;
      if (row.folder !== folder) problems.push(`${at}: folder is ${folder}, not ${row.folder}`);
      const requires = reg.requires ?? [];
      if (JSON.stringify(row.requires) !== JSON.stringify(requires)) {
        problems.push(`${at}: requires ${JSON.stringify(requires)}, the table says ${JSON.stringify(row.requires)}`);
      }
      const defaults = (reg.config?.defaults ?? {}) as Record<string, unknown>;
      const keys = Object.keys(defaults);
      if (JSON.stringify([...row.config.keys()]) !== JSON.stringify(keys)) {
        problems.push(`${at}: config keys are ${JSON.stringify(keys)}, the table says ${JSON.stringify([...row.config.keys()])}`);
      }
      for (const k of keys) {
        const documented = row.config.get(k);
        if (documented === undefined || (documented.startsWith('<') && documented.endsWith('>'))) continue;
        if (documented !== tomlValue(defaults[k])) problems.push(`${at}: default of ${k} is ${tomlValue(defaults[k])}, the table says ${documented}`);
      }
      for (const e of row.exports) if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(e)) problems.push(`${at}: export ${JSON.stringify(e)} is not a name`);
    }

    const order = rows.map((r) => r.uri).filter((u) => uris.has(u));
    const expected = builtins.map(uriOf).filter((u) => byUri.has(u));
    if (JSON.stringify(order) !== JSON.stringify(expected)) {
      problems.push(`rows are not in plugins/builtins.ts order; expected:\n  ${expected.join('\n  ')}`);
    }
    assert.deepEqual(problems, [], `PLUGINS.md disagrees with plugins/builtins.ts:\n${problems.join('\n')}`);
  });

  it('finds the folder of every builtin from the imports of builtins.ts', async () => {
    const folders = await foldersOf();
    for (const reg of builtins) assert.ok(folders.has(reg), `no import in plugins/builtins.ts defines ${uriOf(reg)}`);
  });
});
