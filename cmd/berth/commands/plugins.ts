/**
 * `berth plugins ls [-q] [-d] [filters]` (ctr's output) and `berth plugins graph [--dot]`:
 * the boot dependency graph, drawn from each plugin's declared requires.
 */
import type { Command } from 'commander';
import { action } from '../action.js';
import { table } from '../output.js';
import type { CliContext } from '../context.js';

interface PluginRow {
  type: string;
  id: string;
  requires: string[];
  platforms: { os: string; architecture: string; variant: string }[];
  exports: Record<string, string>;
  capabilities: string[];
  initErr?: { code: number; message: string };
}

const CODE_NAMES = ['OK', 'Canceled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound', 'AlreadyExists', 'PermissionDenied',
  'ResourceExhausted', 'FailedPrecondition', 'Aborted', 'OutOfRange', 'Unimplemented', 'Internal', 'Unavailable', 'DataLoss', 'Unauthenticated'];

const platformString = (ps: PluginRow['platforms']) =>
  [...new Set(ps.map((p) => [p.os, p.architecture, p.variant].filter(Boolean).join('/')))].sort().join(',');

export const statusOf = (p: PluginRow) => (!p.initErr ? 'ok' : p.initErr.message.includes('skip plugin') ? 'skip' : 'error');

async function fetchPlugins(ctx: CliContext, filters: string[]): Promise<PluginRow[]> {
  const { IntrospectionDefinition } = await import('../../../api/gen/services/introspection/v1/introspection.js');
  const res = await ctx.connection.service(IntrospectionDefinition).plugins({ filters });
  return res.plugins as PluginRow[];
}

function detailed(plugins: PluginRow[]): string {
  const rows: string[][] = [];
  plugins.forEach((p, i) => {
    if (i > 0) rows.push(['', '', '', '']);
    rows.push(['Type:', ` ${p.type}`]);
    rows.push(['ID:', ` ${p.id}`]);
    if (p.requires.length) {
      rows.push(['Requires:', '']);
      for (const r of p.requires) rows.push(['', ` ${r}`]);
    }
    if (p.platforms.length) rows.push(['Platforms:', ` ${platformString(p.platforms)}`]);
    if (Object.keys(p.exports).length) {
      rows.push(['Exports:', '']);
      for (const [k, v] of Object.entries(p.exports)) rows.push(['', ` ${k}`, ` ${v}`]);
    }
    if (p.capabilities.length) rows.push(['Capabilities:', ` ${p.capabilities.join(',')}`]);
    if (p.initErr) {
      rows.push(['Error:', '']);
      rows.push(['', ' Code:', ` ${CODE_NAMES[p.initErr.code] ?? p.initErr.code}`]);
      rows.push(['', ' Message:', ` ${p.initErr.message}`]);
    }
  });
  return table(rows, 4, 4);
}

/** Edges from each plugin to the plugins whose type it requires. */
export function graphEdges(plugins: PluginRow[]): Map<string, string[]> {
  const uri = (p: PluginRow) => `${p.type}.${p.id}`;
  const edges = new Map<string, string[]>();
  for (const p of plugins) {
    const deps = p.requires.includes('*')
      ? plugins.filter((o) => o !== p && !o.requires.includes('*'))
      : plugins.filter((o) => o !== p && p.requires.includes(o.type));
    edges.set(uri(p), deps.map(uri));
  }
  return edges;
}

/** Text tree: each plugin in boot order with what it waits for, and its status. */
function textGraph(plugins: PluginRow[]): string {
  const edges = graphEdges(plugins);
  const lines: string[] = [];
  for (const p of plugins) {
    const u = `${p.type}.${p.id}`;
    lines.push(`${u} [${statusOf(p)}]`);
    const deps = edges.get(u)!;
    deps.forEach((d, i) => lines.push(`${i === deps.length - 1 ? '└── ' : '├── '}${d}`));
  }
  return lines.join('\n') + '\n';
}

function dotGraph(plugins: PluginRow[]): string {
  const edges = graphEdges(plugins);
  const color = { ok: 'black', skip: 'gray', error: 'red' } as const;
  const out = ['digraph plugins {', '  rankdir=LR;', '  node [shape=box, fontsize=10];'];
  for (const p of plugins) out.push(`  "${p.type}.${p.id}" [color=${color[statusOf(p)]}];`);
  for (const [from, tos] of edges) for (const to of tos) out.push(`  "${from}" -> "${to}";`);
  out.push('}');
  return out.join('\n') + '\n';
}

export function register(program: Command): void {
  const plugins = program.command('plugins').alias('plugin').description('provides information about daemon plugins');
  plugins
    .command('list')
    .alias('ls')
    .description('lists daemon plugins')
    .argument('[filters...]')
    .option('-q, --quiet', 'print only the plugin ids')
    .option('-d, --detailed', 'print detailed information about each plugin')
    .action(action(async (ctx, args, opts) => {
      const ps = await fetchPlugins(ctx, args);
      if (opts.quiet) { process.stdout.write(ps.map((p) => `${p.id}\n`).join('')); return; }
      if (opts.detailed) { process.stdout.write(detailed(ps)); return; }
      const rows = [['TYPE', 'ID', 'PLATFORMS', 'STATUS'], ...ps.map((p) => [p.type, p.id, p.platforms.length ? platformString(p.platforms) : '-', statusOf(p)])];
      process.stdout.write(table(rows, 4, 4));
    }));
  plugins
    .command('graph')
    .description('print the boot dependency graph as a text tree, or as Graphviz dot with --dot')
    .argument('[filters...]')
    .option('--dot', 'print Graphviz dot')
    .action(action(async (ctx, args, opts) => {
      const ps = await fetchPlugins(ctx, args);
      process.stdout.write(opts.dot ? dotGraph(ps) : textGraph(ps));
    }));
}
