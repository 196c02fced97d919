/**
 * berthd's command line: `berthd [--config F] [--root D] [--state D] [--address S]
 * [--log-level L]`, plus `berthd config default|dump` and `berthd --version`.
 */
import { readdirSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG_PATH, type DaemonConfig } from '../config/config.js';
import { loadConfig, validateDaemonConfig } from '../config/loader.js';
import { defaultConfigWithPlugins, effectiveConfig, renderToml } from '../config/render.js';
import { ConfigError } from '../config/shape.js';
import { Kernel } from '../plugin/kernel.js';
import { EventExchange } from '../events/exchange.js';
import { silentLogger } from '../log/logger.js';
import { uriOf, type Registration } from '../plugin/types.js';
import { SERVER_VERSION, REVISION } from '../version/version.js';
import type { RunningDaemon } from './daemon.js';

export interface DaemonArgs {
  command: string[];
  config?: string;
  root?: string;
  state?: string;
  address?: string;
  logLevel?: string;
  version: boolean;
  help: boolean;
  /** `publish` subcommand flags (shims of runtime v1 call `<daemon> --address A publish --topic T --namespace NS`). */
  topic?: string;
  namespace?: string;
}

const USAGE = `usage: berthd [--config FILE] [--root DIR] [--state DIR] [--address SOCKET] [--log-level LEVEL]
       berthd config default|dump [--config FILE]
       berthd --address SOCKET publish --topic TOPIC --namespace NS < any.pb
       berthd --version`;

export function parseDaemonArgs(argv: string[]): DaemonArgs {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        root: { type: 'string' },
        state: { type: 'string' },
        address: { type: 'string', short: 'a' },
        'log-level': { type: 'string', short: 'l' },
        version: { type: 'boolean', short: 'v', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        topic: { type: 'string' },
        namespace: { type: 'string' },
      },
    });
    return {
      command: positionals,
      config: values.config,
      root: values.root,
      state: values.state,
      address: values.address,
      logLevel: values['log-level'],
      version: values.version ?? false,
      help: values.help ?? false,
      topic: values.topic,
      namespace: values.namespace,
    };
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}\n${USAGE}`);
  }
}

/** Loads the config file and applies the command-line overrides on top of it. */
async function configFor(args: DaemonArgs): Promise<{ config: DaemonConfig; warnings: string[]; path?: string }> {
  const path = args.config ?? DEFAULT_CONFIG_PATH;
  const loaded = await loadConfig(path, { explicit: args.config !== undefined });
  const cfg = loaded.config;
  if (args.root) cfg.root = args.root;
  if (args.state) cfg.state = args.state;
  if (args.address) cfg.grpc.address = args.address;
  if (args.logLevel) cfg.debug.level = args.logLevel;
  validateDaemonConfig(cfg, '--flags');
  return { config: cfg, warnings: loaded.warnings, path: loaded.files[0] };
}

/** Runs the command; resolves the exit code for one-shot commands, or never for the daemon. */
export async function runDaemonCommand(
  args: DaemonArgs,
  builtins: readonly Registration<any, any>[],
  extraRegistrations: (cfg: DaemonConfig) => Registration<any, any>[] = () => [],
): Promise<number | undefined> {
  if (args.help) { process.stdout.write(`${USAGE}\n`); return 0; }
  if (args.version) { process.stdout.write(`berthd ${SERVER_VERSION} ${REVISION}\n`); return 0; }
  const [cmd, sub] = args.command;
  if (cmd === 'config') {
    if (sub === 'default') {
      process.stdout.write(await renderToml(defaultConfigWithPlugins(builtins)));
      return 0;
    }
    if (sub === 'dump') {
      const { config, warnings } = await configFor(args);
      for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
      const regs = [...builtins, ...extraRegistrations(config)];
      const kernel = new Kernel(regs, {
        root: config.root, state: config.state, addresses: { grpc: '', ttrpc: '' }, pluginConfig: config.plugins,
        disabled: [], required: [], events: new EventExchange(), log: silentLogger,
        daemon: { logLevel: 'info', timeouts: {}, executable: process.execPath },
      });
      for (const w of kernel.decodeConfigs()) process.stderr.write(`warning: ${w}\n`);
      const decoded = new Map(regs.map((r) => [uriOf(r), kernel.configOf(uriOf(r))]));
      process.stdout.write(await renderToml(effectiveConfig(config, decoded)));
      return 0;
    }
    throw new ConfigError(`unknown config command ${JSON.stringify(sub ?? '')}: expected "default" or "dump"`);
  }
  if (cmd === 'publish') {
    await publishEvent(args);
    return 0;
  }
  if (cmd !== undefined) throw new ConfigError(`unknown command ${JSON.stringify(cmd)}\n${USAGE}`);

  const { config, warnings, path } = await configFor(args);
  const { startDaemon } = await import('./daemon.js');
  // Caught from here on: a stop asked for while the plugins start (or between the socket
  // appearing and the boot finishing) waits for the boot and then shuts down cleanly, instead
  // of killing the daemon with its socket in place. A second signal still ends it at once.
  let daemon: RunningDaemon | undefined;
  let pending: string | undefined;
  const onSignal = (sig: string) => {
    if (!daemon) {
      pending ??= sig;
      return;
    }
    daemon.log.info(`received ${sig}, shutting down`);
    daemon.stop().then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
  daemon = await startDaemon({
    config,
    registrations: [...builtins, ...extraRegistrations(config)],
    warnings,
    configPath: path,
    executable: process.argv[1] ?? process.execPath,
  });
  if (pending) onSignal(pending);
  // What the daemon holds, in the log (leak hunting): on SIGUSR2, and on SIGUSR1, which
  // containerd answers with a stack dump (cmd/berthd takes SIGUSR1 from Node's inspector).
  const running = daemon;
  for (const sig of ['SIGUSR1', 'SIGUSR2'] as const) process.on(sig, () => running.log.info('resource dump', { signal: sig, ...resourceDump() }));
  return undefined;
}

/**
 * `publish`: reads a marshalled google.protobuf.Any from stdin and sends it with Events.Publish
 * to the daemon at --address in --namespace (what containerd-shim, runtime v1, runs for every
 * event it raises).
 */
async function publishEvent(args: DaemonArgs): Promise<void> {
  const { InvalidArgumentError } = await import('../errdefs/errdefs.js');
  if (!args.topic) throw new InvalidArgumentError('topic required to publish event');
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const { Any } = await import('../../api/gen/google/protobuf/any.js');
  const event = Any.decode(Buffer.concat(chunks));
  const { Connection } = await import('../../client/connection.js');
  const { EventsDefinition } = await import('../../api/gen/services/events/v1/events.js');
  const conn = new Connection({ address: args.address ?? '', namespace: args.namespace ?? '', timeoutMs: 10_000 });
  try {
    await conn.service(EventsDefinition).publish({ topic: args.topic, event });
  } finally {
    conn.close();
  }
}

/**
 * What the daemon holds right now: open descriptors, memory, and the event loop's active
 * resources (libuv handles and requests, timers) counted by type. Logged on SIGUSR2; tests
 * compare two dumps taken before and after a workload to find leaks.
 */
export function resourceDump(): { fds: number; rss: number; heapUsed: number; heapTotal: number; external: number; handles: number; timers: number; resources: string } {
  const counts: Record<string, number> = {};
  const active = process.getActiveResourcesInfo();
  for (const type of active) counts[type] = (counts[type] ?? 0) + 1;
  let fds = -1;
  try {
    // Reading the directory opens one descriptor of its own.
    fds = readdirSync('/proc/self/fd').length - 1;
  } catch {
    // Not Linux: leave -1.
  }
  const mem = process.memoryUsage();
  return {
    fds, rss: mem.rss, heapUsed: mem.heapUsed, heapTotal: mem.heapTotal, external: mem.external,
    handles: active.length, timers: counts.Timeout ?? 0, resources: JSON.stringify(counts),
  };
}
