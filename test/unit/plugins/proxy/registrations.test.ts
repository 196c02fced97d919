// proxy_plugins config sections → registrations: type names (short and full), exports,
// placement in the boot graph next to the builtins of their type, and the config errors
// (unknown type, no address, a name taken by a builtin of that type — even a disabled one).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ConfigError } from '../../../../core/config/shape.js';
import { EventExchange } from '../../../../core/events/exchange.js';
import { silentLogger } from '../../../../core/log/logger.js';
import { Kernel } from '../../../../core/plugin/kernel.js';
import { definePlugin, PluginType, uriOf, type Registration } from '../../../../core/plugin/types.js';
import { ProxyContentStore } from '../../../../plugins/content/proxy/proxy.js';
import { builtins } from '../../../../plugins/builtins.js';
import { proxyRegistrations } from '../../../../plugins/proxy/registrations.js';
import { ProxySnapshotter } from '../../../../plugins/snapshotter/proxy/proxy.js';
import { tempDir } from '../../../helpers/tmp.js';

const root = tempDir('berth-proxy-regs-');
const boot = async (regs: Registration<any, any>[], disabled: string[] = []) => {
  const k = new Kernel(regs, {
    root: join(root, 'root'), state: join(root, 'state'), addresses: { grpc: '/x.sock', ttrpc: '/x.sock.ttrpc' },
    pluginConfig: {}, disabled, required: [], events: new EventExchange(), log: silentLogger,
    daemon: { logLevel: 'info', timeouts: {}, executable: 'berthd' },
  });
  await k.boot();
  return k;
};

describe('proxyRegistrations', () => {
  it('registers snapshot and content proxies by short or full type name', async () => {
    const regs = proxyRegistrations({
      snap: { type: 'snapshot', address: '/run/snap.sock' },
      snap2: { type: PluginType.Snapshotter, address: 'unix:///run/snap2.sock' },
      blobs: { type: 'content', address: '/run/blobs.sock' },
      blobs2: { type: PluginType.Content, address: '/run/blobs2.sock' },
    }, builtins);
    assert.deepEqual(regs.map(uriOf), [
      'io.containerd.snapshotter.v1.snap', 'io.containerd.snapshotter.v1.snap2',
      'io.containerd.content.v1.blobs', 'io.containerd.content.v1.blobs2',
    ]);
    for (const r of regs) {
      assert.equal(r.requires, undefined, 'no requires, as containerd');
      assert.equal(r.config, undefined, 'no config section');
    }
    const k = await boot(regs);
    const byId = new Map(k.plugins.map((p) => [p.id, p]));
    assert.equal(byId.get('snap')!.status, 'ok', 'init does not dial: the peer may come later');
    assert.deepEqual(byId.get('snap')!.meta, { platforms: [], exports: { address: '/run/snap.sock' }, capabilities: [] });
    assert.equal(byId.get('snap2')!.meta.exports.address, 'unix:///run/snap2.sock', 'exported as configured');
    assert.ok(byId.get('snap')!.instance instanceof ProxySnapshotter);
    assert.ok(byId.get('blobs')!.instance instanceof ProxyContentStore);
    await k.stop();
  });

  it('places proxy snapshotters before the plugins that require snapshotters', async () => {
    const seen: string[] = [];
    const user = definePlugin({
      type: PluginType.Metadata, id: 'user', requires: [PluginType.Snapshotter, PluginType.Content],
      init: async (ctx) => {
        const sns = await ctx.getByType(PluginType.Snapshotter);
        seen.push(...sns.keys());
        return {};
      },
    });
    const k = await boot([user, ...proxyRegistrations({ remote: { type: 'snapshot', address: '/run/r.sock' }, cs: { type: 'content', address: '/run/c.sock' } }, [])]);
    assert.deepEqual(k.plugins.map((p) => p.id), ['remote', 'cs', 'user']);
    assert.deepEqual(seen, ['remote']);
    await k.stop();
  });

  it('rejects unknown types and missing addresses', () => {
    assert.throws(() => proxyRegistrations({ x: { type: 'diff', address: '/run/x.sock' } }, builtins),
      (e) => e instanceof ConfigError && /proxy_plugins\.x\.type: expected "snapshot" or "content", got "diff"/.test(e.message));
    assert.throws(() => proxyRegistrations({ x: { type: 'snapshot', address: '' } }, builtins),
      (e) => e instanceof ConfigError && /proxy_plugins\.x\.address/.test(e.message));
  });

  it('refuses a name taken by a builtin of the same type, and only of the same type', () => {
    for (const reg of builtins.filter((r) => r.type === PluginType.Snapshotter || r.type === PluginType.Content)) {
      const type = reg.type === PluginType.Snapshotter ? 'snapshot' : 'content';
      assert.throws(() => proxyRegistrations({ [reg.id]: { type, address: '/run/x.sock' } }, builtins),
        (e) => e instanceof ConfigError && e.message.includes(`${uriOf(reg)} is already a built-in plugin`), reg.id);
    }
    // `content` is a content builtin, not a snapshotter: a snapshot proxy may use the name.
    assert.equal(proxyRegistrations({ content: { type: 'snapshot', address: '/run/x.sock' } }, builtins).length, 1);
  });
});
