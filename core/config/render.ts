/** Renders configs as TOML for `berthd config default` and `berthd config dump`. */
import { defaultConfig, type DaemonConfig } from './config.js';
import { uriOf, type Registration } from '../plugin/types.js';

/** The complete default config: daemon defaults plus every plugin's typed defaults. */
export function defaultConfigWithPlugins(regs: readonly Registration<any, any>[]): DaemonConfig {
  const cfg = defaultConfig();
  for (const r of regs) if (r.config) cfg.plugins[uriOf(r)] = structuredClone(r.config.defaults) as Record<string, unknown>;
  return cfg;
}

/** Effective config: what was loaded, with each plugin section merged over its defaults. */
export function effectiveConfig(loaded: DaemonConfig, pluginConfigs: ReadonlyMap<string, unknown>): DaemonConfig {
  const cfg = structuredClone(loaded);
  for (const [uri, value] of pluginConfigs) if (value !== undefined) cfg.plugins[uri] = value as Record<string, unknown>;
  return cfg;
}

export async function renderToml(cfg: DaemonConfig): Promise<string> {
  const { default: toml } = await import('@iarna/toml');
  return toml.stringify(cfg as unknown as Parameters<typeof toml.stringify>[0]);
}
