/**
 * `berth snapshotter serve --snapshotter NAME --address SOCK [--root DIR] [--config FILE]`:
 * runs one of berth's built-in snapshotters (overlayfs, native, btrfs) on its own, outside
 * berthd, and serves it over the Snapshots gRPC API on a unix socket. Point containerd (or
 * berthd) at the socket with a `[proxy_plugins.<name>] type = "snapshot"` section.
 *
 * A tiny kernel boots just that snapshotter's registration, with root `--root` (state below
 * it), so the snapshotter sees the same config keys as inside berthd: `--config` takes a
 * berthd-style TOML file, of which only `[plugins."io.containerd.snapshotter.v1.<name>"]`
 * is read. SIGTERM/SIGINT stop the server, close the snapshotter and remove the socket.
 */
import type { Command } from 'commander';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { UsageError } from '../action.js';

export const DEFAULT_SERVE_ROOT = '/var/lib/berth-snapshotter';

interface ServeOptions {
  snapshotter?: string;
  root?: string;
  config?: string;
  logLevel?: string;
}

/**
 * The --address of `serve`. The program's global `-a/--address` claims that flag wherever
 * it appears, so the value is read from there, but only when given on the command line:
 * the daemon-socket default (or $CONTAINERD_ADDRESS) must never become a serving socket.
 */
function serveAddress(cmd: Command): string {
  let top: Command = cmd;
  while (top.parent) top = top.parent;
  const own = cmd.opts<{ address?: string }>().address;
  if (own) return own;
  if (top.getOptionValueSource('address') === 'cli') return String(top.opts<{ address: string }>().address);
  throw new UsageError('--address SOCKET is required: the unix socket to serve the snapshotter on');
}

async function serve(opts: ServeOptions, cmd: Command): Promise<void> {
  const name = opts.snapshotter;
  if (!name) throw new UsageError('--snapshotter NAME is required (overlayfs, native, btrfs)');
  const address = resolve(serveAddress(cmd).replace(/^unix:\/\//, ''));
  const root = resolve(opts.root || DEFAULT_SERVE_ROOT);
  const debug = (cmd.optsWithGlobals() as { debug?: boolean }).debug;
  const level = opts.logLevel || (debug ? 'debug' : 'info');

  const [{ builtins }, { Kernel }, { EventExchange }, { createLogger }, { PluginType, uriOf }, { messageOf }, { serveSnapshotter }] = await Promise.all([
    import('../../../plugins/builtins.js'),
    import('../../../core/plugin/kernel.js'),
    import('../../../core/events/exchange.js'),
    import('../../../core/log/logger.js'),
    import('../../../core/plugin/types.js'),
    import('../../../core/errdefs/errdefs.js'),
    import('../../../client/snapshotservice/index.js'),
  ]);

  const available = builtins.filter((r) => r.type === PluginType.Snapshotter);
  const reg = available.find((r) => r.id === name);
  if (!reg) {
    throw new UsageError(`unknown snapshotter ${JSON.stringify(name)}: berth has ${available.map((r) => r.id).join(', ')}`);
  }
  const uri = uriOf(reg);

  // Only this snapshotter's section of the config file matters here.
  let pluginConfig: Record<string, Record<string, unknown>> = {};
  let warnings: string[] = [];
  if (opts.config) {
    const { loadConfig } = await import('../../../core/config/loader.js');
    const loaded = await loadConfig(opts.config, { explicit: true });
    warnings = loaded.warnings;
    pluginConfig = Object.fromEntries(Object.entries(loaded.config.plugins).filter(([k]) => k === uri || k === `v1:${name}`));
  }

  const log = createLogger({ level, format: 'text' });
  for (const w of warnings) log.warn(w);
  // As berthd does with its root and state: plugins create their own directories below them.
  mkdirSync(root, { recursive: true, mode: 0o711 });
  mkdirSync(join(root, 'state'), { recursive: true, mode: 0o711 });
  const kernel = new Kernel([reg], {
    root,
    state: join(root, 'state'),
    addresses: { grpc: address, ttrpc: '' },
    pluginConfig,
    disabled: [],
    required: [],
    events: new EventExchange(),
    log,
    daemon: { logLevel: level, timeouts: {}, executable: process.argv[1] ?? process.execPath, configPath: opts.config },
    configSource: opts.config,
  });
  for (const w of kernel.decodeConfigs()) log.warn(w);
  await kernel.boot();
  const result = kernel.plugins.find((p) => p.uri === uri);
  if (!result || result.status !== 'ok') {
    await kernel.stop();
    throw new Error(`snapshotter ${name} did not start: ${result?.error ? messageOf(result.error) : 'not loaded'}`);
  }
  const sn = result.instance as import('../../../core/snapshots/snapshotter.js').Snapshotter;

  let server: Awaited<ReturnType<typeof serveSnapshotter>>;
  try {
    server = await serveSnapshotter(sn, address, { log });
  } catch (err) {
    await kernel.stop();
    throw err;
  }
  log.info('serving snapshotter', { snapshotter: name, address, root: result.meta.exports.root ?? join(root, uri) });

  await new Promise<void>((resolveStop) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info(`received ${signal}, shutting down`);
      server.close()
        .then(() => kernel.stop())
        .catch((err) => log.error('shutdown failed', { error: messageOf(err) }))
        .finally(() => resolveStop());
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  log.info('snapshotter server stopped');
  // Nothing is left to do; lingering handles (timers of the snapshotter) must not keep us up.
  process.exit(0);
}

export function register(program: Command): void {
  const snapshotter = program.command('snapshotter').description('run berth snapshotters outside berthd');
  snapshotter
    .command('serve')
    .description('serve a berth snapshotter over the snapshots gRPC API (for a proxy_plugins entry of containerd or berthd)')
    .option('--snapshotter <name>', 'the berth snapshotter to serve: overlayfs, native or btrfs')
    .option('--address <socket>', 'unix socket to listen on')
    .option('--root <dir>', 'root directory of the snapshotter\'s data', DEFAULT_SERVE_ROOT)
    .option('--config <file>', 'berthd-style TOML; its [plugins."io.containerd.snapshotter.v1.<name>"] section configures the snapshotter')
    .option('--log-level <level>', 'log level (debug logs every request with its namespace)')
    .action(async (opts: ServeOptions, cmd: Command) => {
      await serve(opts, cmd);
    });
}
