/**
 * io.containerd.snapshotter.v1.native — snapshots as plain directories, children made by
 * copying their parent. Works on every filesystem; exports no `root` (as containerd 1.6).
 */
import { messageOf } from '../../../core/errdefs/errdefs.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';
import type { Snapshotter } from '../../../core/snapshots/snapshotter.js';
import { checkRootPath, hostPlatform } from '../common.js';

export interface NativeConfig {
  /** Root directory of the snapshotter; default: the plugin's own directory under the daemon root. */
  root_path: string;
}

export const nativePlugin = definePlugin<NativeConfig, Snapshotter>({
  type: PluginType.Snapshotter,
  id: 'native',
  config: { defaults: { root_path: '' }, validate: (c) => checkRootPath(c.root_path) },
  async init(ctx) {
    ctx.meta.platforms.push(hostPlatform());
    const root = ctx.config.root_path || ctx.root;
    const { NativeSnapshotter } = await import('./native.js');
    const snapshotter = new NativeSnapshotter(root, { log: ctx.log });
    snapshotter.cleanupOrphans().catch((err) => ctx.log.warn('cleanup of orphaned snapshot directories failed', { error: messageOf(err) }));
    return snapshotter;
  },
});
