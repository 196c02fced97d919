/**
 * The daemon lifecycle: config → logger → kernel boot → gRPC and ttrpc listeners → wait for
 * a signal → stop accepting → close plugins in reverse order → remove the sockets.
 */
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';
import type { DaemonConfig } from '../config/config.js';
import { ttrpcAddress } from '../config/config.js';
import { EventExchange } from '../events/exchange.js';
import { createLogger, type Logger } from '../log/logger.js';
import { Kernel } from '../plugin/kernel.js';
import type { Registration } from '../plugin/types.js';
import { isGrpcPlugin } from './grpc-adapter.js';
import { listenGrpc, type RunningServer } from './grpc-server.js';
import { isTtrpcPlugin } from './ttrpc-plugin.js';
import { startMemoryTrimmer } from './memory.js';
import { applyDeferredV8FlagsSoon } from '../sys/v8flags.js';
import { claimDaemonDirectory, type DirectoryLock } from './daemon-lock.js';
import { prepareSocketPath, secureSocket, socketPath } from './socket.js';

export interface DaemonOptions {
  config: DaemonConfig;
  registrations: readonly Registration<any, any>[];
  /** Findings from loading the config, logged once the logger exists. */
  warnings: string[];
  configPath?: string;
  executable: string;
}

export interface RunningDaemon {
  kernel: Kernel;
  log: Logger;
  stop(): Promise<void>;
}

export async function startDaemon(opts: DaemonOptions): Promise<RunningDaemon> {
  const cfg = withAbsolutePaths(opts.config);
  const log = createLogger({ level: cfg.debug.level, format: cfg.debug.format });
  for (const w of opts.warnings) log.warn(w);
  if (cfg.temp) process.env.TMPDIR = cfg.temp;
  // Before any plugin starts: a plugin's boot-time cleanup must never run on another
  // daemon's root, and a daemon already answering on the socket ends this boot here.
  const locks: DirectoryLock[] = [];
  const releaseLocks = () => { for (const l of locks.splice(0)) l.release(); };
  try {
    locks.push(claimDaemonDirectory('root', cfg.root));
    if (cfg.state !== cfg.root) locks.push(claimDaemonDirectory('state', cfg.state));
    for (const path of [cfg.grpc.address, ttrpcAddress(cfg)].map(socketPath)) await prepareSocketPath(path);
  } catch (err) {
    releaseLocks();
    throw err;
  }
  for (const l of locks) {
    if (l.unsupported) log.warn('cannot lock the directory: a second daemon on it would not be refused', { lock: l.path, error: l.unsupported });
  }

  const kernel = new Kernel(opts.registrations, {
    root: cfg.root,
    state: cfg.state,
    addresses: { grpc: cfg.grpc.address, ttrpc: ttrpcAddress(cfg) },
    pluginConfig: cfg.plugins,
    disabled: cfg.disabled_plugins,
    required: cfg.required_plugins,
    events: new EventExchange(),
    log,
    daemon: { logLevel: cfg.debug.level, timeouts: cfg.timeouts, executable: opts.executable, configPath: opts.configPath },
    configSource: opts.configPath,
  });
  for (const w of kernel.decodeConfigs()) log.warn(w);
  try {
    await kernel.boot();
  } catch (err) {
    await kernel.stop();
    releaseLocks();
    throw err;
  }

  const instances = kernel.plugins.filter((p) => p.status === 'ok').map((p) => p.instance);
  const servers: { close(): Promise<void> }[] = [];
  try {
    servers.push(await listenGrpc({
      address: cfg.grpc.address,
      uid: cfg.grpc.uid,
      gid: cfg.grpc.gid,
      maxRecvMessageSize: cfg.grpc.max_recv_message_size,
      maxSendMessageSize: cfg.grpc.max_send_message_size,
      services: instances.filter(isGrpcPlugin).flatMap((p) => p.grpcServices()),
      log,
    }));
    const ttrpcBindings = instances.filter(isTtrpcPlugin).flatMap((p) => p.ttrpcServices());
    if (ttrpcBindings.length) servers.push(await listenTtrpc(ttrpcAddress(cfg), cfg.ttrpc.address ? cfg.ttrpc : cfg.grpc, ttrpcBindings));
  } catch (err) {
    await Promise.all(servers.map((s) => s.close()));
    await kernel.stop();
    releaseLocks();
    throw err;
  }
  log.info(`berthd successfully booted in ${process.uptime().toFixed(3)}s`, { address: cfg.grpc.address });
  // Only now: built-in modules loaded before a V8 flag changes keep their code cache.
  applyDeferredV8FlagsSoon();
  startMemoryTrimmer({ signal: kernel.signal });

  let stopping: Promise<void> | undefined;
  return {
    kernel,
    log,
    stop: () => (stopping ??= (async () => {
      log.info('stopping berthd');
      await Promise.all(servers.map((s) => s.close()));
      await kernel.stop();
      releaseLocks();
      log.info('berthd stopped');
    })()),
  };
}

/**
 * The daemon's directories and sockets as absolute paths: they are handed to processes that
 * run elsewhere (a shim's working directory is its bundle; it dials the daemon's ttrpc socket
 * and writes below the state directory), so a relative `--root rel/dir` must mean the
 * directory it meant where berthd was started.
 */
function withAbsolutePaths(cfg: DaemonConfig): DaemonConfig {
  const absoluteAddress = (address: string) => (address ? resolve(socketPath(address)) : address);
  return {
    ...cfg,
    root: resolve(cfg.root),
    state: resolve(cfg.state),
    temp: cfg.temp && resolve(cfg.temp),
    grpc: { ...cfg.grpc, address: absoluteAddress(cfg.grpc.address) },
    ttrpc: { ...cfg.ttrpc, address: absoluteAddress(cfg.ttrpc.address) },
  };
}

async function listenTtrpc(
  address: string,
  owner: { uid: number; gid: number },
  bindings: import('./ttrpc-plugin.js').TtrpcServiceBinding[],
): Promise<RunningServer> {
  const { TtrpcServer } = await import('../../api/ttrpc/server.js');
  const path = socketPath(address);
  await prepareSocketPath(path);
  const server = new TtrpcServer();
  for (const b of bindings) server.register(b.definition, b.handlers as never);
  await server.listen(`unix://${path}`);
  secureSocket(path, owner.uid, owner.gid);
  return {
    address: path,
    close: async () => {
      await server.close({ graceMs: 2000 });
      rmSync(path, { force: true });
    },
  };
}
