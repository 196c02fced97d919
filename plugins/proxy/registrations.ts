/**
 * Turns `[proxy_plugins.<name>]` config sections into plugin registrations: a snapshotter or
 * content store that forwards every call over gRPC to the process listening on `address`.
 * They join the graph like builtins (introspection lists them with `exports.address`).
 */
import { ConfigError } from '../../core/config/shape.js';
import type { ProxyPluginConfig } from '../../core/config/config.js';
import { definePlugin, PluginType, uriOf, type Registration } from '../../core/plugin/types.js';

const TYPES: Record<string, string> = {
  snapshot: PluginType.Snapshotter,
  [PluginType.Snapshotter]: PluginType.Snapshotter,
  content: PluginType.Content,
  [PluginType.Content]: PluginType.Content,
};

export function proxyRegistrations(
  proxies: Record<string, ProxyPluginConfig>,
  builtins: readonly Registration<any, any>[],
): Registration<any, any>[] {
  const taken = new Set(builtins.map(uriOf));
  return Object.entries(proxies).map(([name, p]) => {
    const type = TYPES[p.type];
    if (!type) throw new ConfigError(`proxy_plugins.${name}.type: expected "snapshot" or "content", got ${JSON.stringify(p.type)}`);
    if (!p.address) throw new ConfigError(`proxy_plugins.${name}.address: must name a unix socket`);
    if (taken.has(`${type}.${name}`)) throw new ConfigError(`proxy_plugins.${name}: ${type}.${name} is already a built-in plugin; pick another name`);
    const address = p.address.replace(/^unix:\/\//, '');
    return definePlugin({
      type,
      id: name,
      async init(ctx) {
        // Reported as configured (containerd does the same); dialled without the scheme.
        ctx.meta.exports.address = p.address;
        const { Peer } = await import('./peer.js');
        if (type === PluginType.Snapshotter) {
          const { ProxySnapshotter } = await import('../snapshotter/proxy/proxy.js');
          // Dialled on first use: the peer may start after berthd, or be down for a while.
          return new ProxySnapshotter(name, new Peer(`proxy snapshotter ${JSON.stringify(name)}`, address));
        }
        const { ProxyContentStore } = await import('../content/proxy/proxy.js');
        return new ProxyContentStore(name, new Peer(`proxy content store ${JSON.stringify(name)}`, address));
      },
    });
  });
}
