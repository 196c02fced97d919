/**
 * `berth plugins ls [-q] [-d] [filters]` (ctr's output) and `berth plugins graph [--dot]`:
 * the boot dependency graph, drawn from each plugin's declared requires.
 */
import type { Command } from 'commander';
import { action } from '../action.js';
import { goTabwriter } from '../output.js';
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

/** ctr's `plugins ls -d`: its lines (Println puts a space between operands) through its tabwriter. */
function detailed(plugins: PluginRow[]): string {
  let text = '';
  const println = (...parts: string[]) => { text += `${parts.join(' ')}\n`; };
  plugins.forEach((p, i) => {
    if (i > 0) println('\t\t\t');
    println('Type:\t', p.type);
    println('ID:\t', p.id);
    if (p.requires.length) {
      println('Requires:\t');
      for (const r of p.requires) println('\t', r);
    }
    if (p.platforms.length) println('Platforms:\t', platformString(p.platforms));
    if (Object.keys(p.exports).length) {
      println('Exports:\t');
      for (const [k, v] of Object.entries(p.exports)) println('\t', k, '\t', v);
    }
    if (p.capabilities.length) println('Capabilities:\t', p.capabilities.join(','));
    if (p.initErr) {
      println('Error:\t');
      println('\t Code:\t', CODE_NAMES[p.initErr.code] ?? String(p.initErr.code));
      println('\t Message:\t', p.initErr.message);
    }
  });
  return goTabwriter(text, 4, 4);
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
      process.stdout.write(goTabwriter(rows.map((r) => `${r.join('\t')}\t\n`).join(''), 4, 4));
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
