/**
 * io.containerd.runtime.v2.task — runs tasks through v2 shims (containerd-shim-runc-v2,
 * containerd-shim-berth-v2, …): bundles under the plugin's state dir, work dirs under its
 * root, shims reconnected after a daemon restart.
 */
import { InvalidArgumentError } from '../../../core/errdefs/errdefs.js';
import { parseDuration } from '../../../core/config/duration.js';
import { DEFAULT_TIMEOUTS } from '../../../core/config/config.js';
import { definePlugin, PluginType, type Platform } from '../../../core/plugin/types.js';
import type { PlatformRuntime } from '../../../core/runtime/runtime.js';

export interface RuntimeV2Config {
  /** Platforms this runtime runs ("os/arch[/variant]"); default: the host's. */
  platforms: string[];
  /** Start shims with SCHED_CORE=1 (Linux core scheduling). */
  sched_core: boolean;
  /**
   * Runtime name → the runtime (name or absolute shim path) that serves it instead. berth's
   * own extension: `"io.containerd.runc.v2" = "io.containerd.berth.v2"` makes berth's shim run
   * every task clients ask runc v2 for. Default: none.
   */
  runtime_overrides: Record<string, string>;
  /**
   * Keep one shim started ahead of the next task, per namespace and shim binary (berth's own
   * extension; see spares.ts). Default: true.
   */
  spare_shims: boolean;
  /** How long a spare shim nobody takes lives, as a duration ("1m", "30s"). Default: "1m". */
  spare_shim_idle: string;
}

const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

export function hostPlatform(): string {
  return `linux/${GOARCH[process.arch] ?? process.arch}`;
}

export function parsePlatform(s: string): Platform {
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !p)) {
    throw new InvalidArgumentError(`platforms: ${JSON.stringify(s)}: unknown operating system or architecture`);
  }
  return { os: parts[0]!, architecture: parts[1]!, variant: parts[2] ?? '' };
}

export const runtimeV2Plugin = definePlugin<RuntimeV2Config, PlatformRuntime>({
  type: PluginType.RuntimeV2,
  id: 'task',
  requires: [PluginType.Event, PluginType.Metadata],
  config: {
    defaults: { platforms: [hostPlatform()], sched_core: false, runtime_overrides: {}, spare_shims: true, spare_shim_idle: '1m' },
    validate: (c) => {
      for (const p of c.platforms) parsePlatform(p);
      if (parseDuration(c.spare_shim_idle, 'spare_shim_idle') <= 0) throw new InvalidArgumentError(`spare_shim_idle: ${JSON.stringify(c.spare_shim_idle)}: must be longer than zero (spare_shims = false turns spares off)`);
      for (const [k, v] of Object.entries(c.runtime_overrides)) {
        if (typeof v !== 'string' || !v) throw new InvalidArgumentError(`runtime_overrides.${JSON.stringify(k)}: expected a runtime name or shim path`);
      }
    },
  },
  async init(ctx) {
    ctx.meta.platforms.push(...ctx.config.platforms.map(parsePlatform));
    const metadata = await ctx.get(PluginType.Metadata);
    const { TaskManager } = await import('./manager.js');
    const { RuntimeResolver } = await import('./resolve.js');
    const timeout = (key: string) => parseDuration(ctx.daemon.timeouts[key] ?? DEFAULT_TIMEOUTS[key] ?? '5s', key);
    const manager = new TaskManager({
      root: ctx.root,
      state: ctx.state,
      address: ctx.addresses.grpc,
      ttrpcAddress: ctx.addresses.ttrpc,
      executable: ctx.daemon.executable,
      schedCore: ctx.config.sched_core,
      debug: ctx.daemon.logLevel === 'debug' || ctx.daemon.logLevel === 'trace',
      spareShims: ctx.config.spare_shims,
      spareIdleMs: parseDuration(ctx.config.spare_shim_idle, 'spare_shim_idle'),
      timeouts: {
        loadMs: timeout('io.containerd.timeout.shim.load'),
        cleanupMs: timeout('io.containerd.timeout.shim.cleanup'),
        shutdownMs: timeout('io.containerd.timeout.shim.shutdown'),
      },
      containers: metadata.containers,
      events: ctx.events,
      resolver: new RuntimeResolver(ctx.daemon.executable, undefined, ctx.config.runtime_overrides),
      log: ctx.log,
    });
    await manager.init();
    setImmediate(() => void manager.warmUp());
    return manager;
  },
});
