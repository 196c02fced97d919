/**
 * io.containerd.runtime.v1.linux — the deprecated runtime v1: each task runs under its own
 * containerd-shim (Debian ships it as /usr/bin/containerd-shim), started and reconnected by
 * the daemon. Config keys and defaults are containerd 1.6's.
 *
 * no_shim = true (containerd runs the shim's logic inside the daemon) is accepted in the
 * config but berth has no in-process shim: creating a task then fails with
 * FAILED_PRECONDITION, and a warning is logged at start-up.
 */
import { constants } from 'node:fs';
import { access, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_TIMEOUTS } from '../../../core/config/config.js';
import { parseDuration } from '../../../core/config/duration.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';
import type { PlatformRuntime } from '../../../core/runtime/runtime.js';
import { DEFAULT_CONFIG, type RuntimeV1Config } from './options.js';

const LOAD_TIMEOUT = 'io.containerd.timeout.shim.load';

/** Single-quotes `s` for /bin/sh. */
const shQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The program shims run to publish events. The daemon's own executable when it can be run
 * directly (bin/berthd.js, mode 0755, `#!/usr/bin/env node`); otherwise (berthd started as
 * `node dist/berthd.js`) a small sh wrapper in the state dir that runs it under this node.
 */
export async function publishBinary(executable: string, stateDir: string): Promise<string> {
  try {
    await access(executable, constants.X_OK);
    return executable;
  } catch {
    await mkdir(stateDir, { recursive: true, mode: 0o711 });
    const wrapper = join(stateDir, 'berthd-publish');
    await writeFile(wrapper, `#!/bin/sh\nexec ${shQuote(process.execPath)} ${shQuote(executable)} "$@"\n`, { mode: 0o755 });
    return wrapper;
  }
}

export const runtimeV1Plugin = definePlugin<RuntimeV1Config, PlatformRuntime>({
  type: PluginType.RuntimeV1,
  id: 'linux',
  requires: [PluginType.Event, PluginType.Metadata],
  config: {
    defaults: { ...DEFAULT_CONFIG },
  },
  async init(ctx) {
    const { hostArchitecture, hostVariant } = await import('../../../client/platforms/index.js');
    ctx.meta.platforms.push({ os: 'linux', architecture: hostArchitecture(), variant: hostVariant() });
    const metadata = await ctx.get(PluginType.Metadata);
    if (ctx.config.no_shim) {
      ctx.log.warn('no_shim = true is not supported by berth: tasks of this runtime cannot be created');
    }
    const { LinuxRuntime } = await import('./runtime.js');
    const runtime = new LinuxRuntime({
      root: ctx.root,
      state: ctx.state,
      address: ctx.addresses.grpc,
      containerdBinary: await publishBinary(ctx.daemon.executable, ctx.state),
      config: ctx.config,
      loadTimeoutMs: parseDuration(ctx.daemon.timeouts[LOAD_TIMEOUT] ?? DEFAULT_TIMEOUTS[LOAD_TIMEOUT] ?? '5s', LOAD_TIMEOUT),
      containers: metadata.containers,
      events: ctx.events,
      log: ctx.log,
    });
    await runtime.init();
    return runtime;
  },
});
