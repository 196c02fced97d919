/**
 * `berth snapshots [--snapshotter S] ls|tree|info|prepare|view|commit|mounts|usage|label|rm|diff|unpack`
 * with ctr 1.6's arguments and output byte for byte (tab-aligned tables with their trailing
 * padding, Go-style JSON, mount(8) command lines). The snapshotter defaults to
 * $CONTAINERD_SNAPSHOTTER, else overlayfs.
 */
import type { Command } from 'commander';
import { action, collect as collectOption, UsageError } from '../action.js';
import { parseLabelArgs } from '../output.js';
import type { CliContext } from '../context.js';
import { mountLookupCommand } from '../../../core/mount/format.js';
import { GcLabel } from '../../../core/metadata/labels.js';

const DEFAULT_SNAPSHOTTER = 'overlayfs';

type Api = typeof import('../../../api/gen/services/snapshots/v1/snapshots.js');
type WireInfo = import('../../../api/gen/services/snapshots/v1/snapshots.js').Info;
type WireMount = import('../../../api/gen/types/mount.js').Mount;

async function client(ctx: CliContext) {
  const api: Api = await import('../../../api/gen/services/snapshots/v1/snapshots.js');
  return { api, svc: ctx.connection.service(api.SnapshotsDefinition) };
}

function snapshotterOf(cmd: Command): string {
  const o = cmd.optsWithGlobals() as { snapshotter?: string };
  return o.snapshotter || process.env.CONTAINERD_SNAPSHOTTER || DEFAULT_SNAPSHOTTER;
}

/**
 * Go's text/tabwriter as ctr configures it (minwidth 1, padding 1, spaces) for rows whose
 * every cell ends in a tab: each cell is padded to its column's widest cell plus one.
 */
export function tabTerminated(rows: readonly (readonly string[])[]): string {
  const len = (s: string) => [...s].length;
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 1, len(c) + 1)));
  return rows.map((r) => r.map((c, i) => c + ' '.repeat(widths[i]! - len(c))).join('') + '\n').join('');
}

const KIND_NAMES = ['Unknown', 'View', 'Active', 'Committed'];
const kindString = (k: number) => KIND_NAMES[k] ?? 'Unknown';

/** Go's RFC 3339 with nanoseconds as time.Time marshals it (trailing fraction zeros dropped). */
export function goTime(d: Date | undefined): string {
  const iso = (d ?? new Date(0)).toISOString(); // 2006-01-02T15:04:05.000Z
  const [whole, frac = ''] = iso.slice(0, -1).split('.');
  const f = frac.replace(/0+$/, '');
  return `${whole}${f ? `.${f}` : ''}Z`;
}

/** encoding/json.MarshalIndent(x, "", "    "), including Go's escaping of <, > and &. */
export function goJsonIndent(v: unknown): string {
  return JSON.stringify(v, null, 4).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A snapshots.Info as ctr prints it (field order and omitempty as the Go struct). */
export function infoJson(i: WireInfo): string {
  const out: Record<string, unknown> = { Kind: kindString(i.kind), Name: i.name };
  if (i.parent) out.Parent = i.parent;
  const labels = Object.entries(i.labels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (labels.length) out.Labels = Object.fromEntries(labels);
  out.Created = goTime(i.createdAt);
  out.Updated = goTime(i.updatedAt);
  return goJsonIndent(out);
}

const mountsJson = (ms: readonly WireMount[]) => goJsonIndent(ms.map((m) => ({ Type: m.type, Source: m.source, Options: m.options })));

const rootLabel = () => ({ [GcLabel.root]: new Date().toISOString().replace(/\.\d+Z$/, 'Z') });

async function collect(ctx: CliContext, cmd: Command): Promise<WireInfo[]> {
  const { svc } = await client(ctx);
  const out: WireInfo[] = [];
  for await (const res of svc.list({ snapshotter: snapshotterOf(cmd) })) out.push(...res.info);
  return out;
}

/** ctr's tree: roots in walk order, children indented by two spaces and marked `\_`. */
export function renderTree(infos: readonly { name: string; parent: string }[]): string {
  interface Node { name: string; parent: string; children: string[] }
  const nodes: Node[] = [];
  const index = new Map<string, Node>();
  const add = (name: string, parent: string): Node => {
    let n = index.get(name);
    if (!n) {
      n = { name, parent, children: [] };
      nodes.push(n);
      index.set(name, n);
    } else {
      n.parent = parent;
    }
    if (parent) {
      const p = index.get(parent) ?? add(parent, '');
      p.children.push(name);
    }
    return n;
  };
  for (const i of infos) add(i.name, i.parent);
  let out = '';
  const print = (name: string, level: number) => {
    const node = index.get(name)!;
    out += `${'  '.repeat(level)}${level > 0 ? '\\_' : ''} ${node.name}\n`;
    for (const c of node.children) print(c, level + 1);
  };
  for (const n of nodes) if (!n.parent) print(n.name, 0);
  return out;
}

export function register(program: Command): void {
  const snapshots = program.command('snapshots').alias('snapshot').description('manage snapshots')
    .option('--snapshotter <name>', 'snapshotter name. Empty value stands for the default value. (env CONTAINERD_SNAPSHOTTER)');

  snapshots.command('list').alias('ls').description('list snapshots')
    .action(action(async (ctx, _args, _opts, cmd) => {
      const infos = await collect(ctx, cmd);
      process.stdout.write(tabTerminated([['KEY', 'PARENT', 'KIND'], ...infos.map((i) => [i.name, i.parent, kindString(i.kind)])]));
    }));

  snapshots.command('tree').description('display tree view of snapshot branches')
    .action(action(async (ctx, _args, _opts, cmd) => {
      process.stdout.write(renderTree(await collect(ctx, cmd)));
    }));

  snapshots.command('info').description('get info about a snapshot').argument('<key>')
    .action(action(async (ctx, [key], _opts, cmd) => {
      const { svc } = await client(ctx);
      const { info } = await svc.stat({ snapshotter: snapshotterOf(cmd), key });
      process.stdout.write(`${infoJson(info!)}\n`);
    }));

  for (const kind of ['prepare', 'view'] as const) {
    snapshots.command(kind)
      .description(kind === 'prepare' ? 'prepare a snapshot from a committed snapshot' : 'create a read-only snapshot from a committed snapshot')
      .argument('<key>').argument('[parent]')
      .option('-t, --target <path>', 'mount target path, will print mount, if provided')
      .option('--mounts', 'Print out snapshot mounts as JSON')
      .action(action(async (ctx, [key, parent = ''], opts, cmd) => {
        const { svc } = await client(ctx);
        const req = { snapshotter: snapshotterOf(cmd), key, parent };
        // ctr protects what it prepares from gc with a root label; views carry none.
        const { mounts } = kind === 'prepare' ? await svc.prepare({ ...req, labels: rootLabel() }) : await svc.view(req);
        if (opts.target) process.stdout.write(mountLookupCommand(mounts, opts.target));
        if (opts.mounts) process.stdout.write(`${mountsJson(mounts)}\n`);
      }));
  }

  snapshots.command('commit').description('commit an active snapshot into the provided name')
    .argument('<key>').argument('<active>')
    .action(action(async (ctx, [name, key], _opts, cmd) => {
      const { svc } = await client(ctx);
      await svc.commit({ snapshotter: snapshotterOf(cmd), name, key, labels: rootLabel() });
    }));

  snapshots.command('mounts').alias('m').alias('mount').description('mount gets mount commands for the snapshots')
    .argument('<target>').argument('<key>')
    .action(action(async (ctx, [target, key], _opts, cmd) => {
      const { svc } = await client(ctx);
      const { mounts } = await svc.mounts({ snapshotter: snapshotterOf(cmd), key });
      process.stdout.write(mountLookupCommand(mounts, target));
    }));

  snapshots.command('usage').description('usage snapshots').argument('[keys...]')
    .option('-b', 'display size in bytes')
    .action(action(async (ctx, keys, opts, cmd) => {
      const { svc } = await client(ctx);
      const snapshotter = snapshotterOf(cmd);
      const { formatBytes } = await import('../../../client/pull/progress.js');
      const size = (n: number) => (opts.b ? String(n) : formatBytes(n));
      const names = keys.length ? keys : (await collect(ctx, cmd)).map((i) => i.name);
      const rows: string[][] = [['KEY', 'SIZE', 'INODES']];
      for (const key of names) {
        const u = await svc.usage({ snapshotter, key });
        rows.push([key, size(u.size), String(u.inodes)]);
      }
      process.stdout.write(tabTerminated(rows));
    }));

  snapshots.command('label').description('add labels to content')
    .argument('<name>').argument('[labels...]', '<label>=<value> to set, <label>= to clear')
    .action(action(async (ctx, [name, ...args], _opts, cmd) => {
      const { svc } = await client(ctx);
      const snapshotter = snapshotterOf(cmd);
      const wanted = parseLabelArgs(args);
      const labels: Record<string, string> = {};
      for (const [k, v] of Object.entries(wanted)) if (v !== '') labels[k] = v;
      const paths = Object.keys(wanted).map((k) => `labels.${k}`);
      // Nothing to change: show what is there rather than clear everything.
      const { info } = paths.length
        ? await svc.update({ snapshotter, info: { name, labels }, updateMask: paths })
        : await svc.stat({ snapshotter, key: name });
      const pairs = Object.entries(info?.labels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      process.stdout.write(`${pairs.map(([k, v]) => `${k}=${v}`).join(',')}\n`);
    }));

  snapshots.command('diff').description("get the diff of two snapshots. the default second snapshot is the first snapshot's parent.")
    .argument('[idA]').argument('[idB]')
    .option('--media-type <type>', 'media type to use for creating diff', 'application/vnd.oci.image.layer.v1.tar+gzip')
    .option('--ref <ref>', 'content upload reference to use', '')
    .option('--keep', 'keep diff content. up to creator to delete it.')
    .option('--label <key=value>', 'labels to attach to the diff content', collectOption, [])
    .action(action(async (ctx, [idA, idB], opts, cmd) => {
      if (!idA) throw new UsageError('snapshot id must be provided');
      const { writeSnapshotDiff } = await import('./snapshot-diff.js');
      const labels = parseLabelArgs(opts.label);
      if (opts.keep) Object.assign(labels, rootLabel());
      await writeSnapshotDiff(ctx.connection, snapshotterOf(cmd), idA, idB ?? '', { mediaType: opts.mediaType, ref: opts.ref, labels }, process.stdout);
    }));

  snapshots.command('unpack').description('unpack applies layers from a manifest to a snapshot')
    .argument('[digest]')
    .option('--snapshotter <name>', 'snapshotter name. Empty value stands for the default value. (env CONTAINERD_SNAPSHOTTER)')
    .action(action(async (ctx, [dgst = ''], opts) => {
      const { validateDigest } = await import('../../../client/reference/digest.js');
      validateDigest(dgst);
      const { ImagesDefinition } = await import('../../../api/gen/services/images/v1/images.js');
      const { getImage, unpackImage } = await import('../../../client/images/index.js');
      const conn = ctx.connection;
      // As ctr: the first image whose target is that digest, unpacked for this platform.
      const { images } = await conn.service(ImagesDefinition).list({ filters: [] });
      const image = images.find((i) => i.target?.digest === dgst);
      if (!image) throw new UsageError('manifest not found');
      process.stdout.write(`unpacking ${dgst} (${image.target!.mediaType})...`);
      try {
        await unpackImage(conn, await getImage(conn, image.name), { snapshotter: opts.snapshotter || process.env.CONTAINERD_SNAPSHOTTER || undefined });
      } catch (err) {
        process.stdout.write('\n');
        throw err;
      }
      process.stdout.write('done\n');
    }));

  snapshots.command('delete').alias('del').alias('remove').alias('rm').description('remove snapshots')
    .argument('<keys...>')
    .action(action(async (ctx, keys, _opts, cmd) => {
      const { svc } = await client(ctx);
      const snapshotter = snapshotterOf(cmd);
      for (const key of keys) {
        try {
          await svc.remove({ snapshotter, key });
        } catch (err) {
          throw new UsageError(`failed to remove ${JSON.stringify(key)}: ${(err as Error).message}`);
        }
      }
    }));
}
