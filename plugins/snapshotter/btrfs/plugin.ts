/**
 * io.containerd.snapshotter.v1.btrfs — snapshots as btrfs subvolumes. Skipped unless its root
 * is on a btrfs filesystem (point `root_path` at one), or when btrfs-progs is missing.
 */
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { messageOf } from '../../../core/errdefs/errdefs.js';
import { definePlugin, PluginType, SkipPluginError } from '../../../core/plugin/types.js';
import type { Snapshotter } from '../../../core/snapshots/snapshotter.js';
import { checkRootPath, hostPlatform } from '../common.js';

export interface BtrfsConfig {
  /** Root directory of the snapshotter (must be on btrfs); default: the plugin's own directory. */
  root_path: string;
}

export const btrfsPlugin = definePlugin<BtrfsConfig, Snapshotter>({
  type: PluginType.Snapshotter,
  id: 'btrfs',
  config: { defaults: { root_path: '' }, validate: (c) => checkRootPath(c.root_path) },
  async init(ctx) {
    ctx.meta.platforms.push(hostPlatform());
    const root = ctx.config.root_path || ctx.root;
    ctx.meta.exports.root = root;
    // The root holds every layer of every image: owner-only, whatever it was before.
    let st;
    try {
      st = statSync(root);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (!st) mkdirSync(root, { mode: 0o700 });
    else if ((st.mode & 0o777) !== 0o700) chmodSync(root, 0o700);

    const { fsTypeOf, lookupMount } = await import('../../../core/mount/index.js');
    const fstype = await fsTypeOf(root);
    if (fstype !== 'btrfs') {
      throw new SkipPluginError(`path ${root} (${fstype}) must be a btrfs filesystem to be used with the btrfs snapshotter`);
    }
    const { BtrfsSnapshotter, btrfs } = await import('./btrfs.js');
    try {
      await btrfs(['--version']);
    } catch (err) {
      throw new SkipPluginError(`btrfs-progs is needed by the btrfs snapshotter (${messageOf(err)})`);
    }
    const device = (await lookupMount(root)).source;
    const snapshotter = new BtrfsSnapshotter(root, device, { log: ctx.log });
    snapshotter.cleanupOrphans().catch((err) => ctx.log.warn('cleanup of orphaned subvolumes failed', { error: messageOf(err) }));
    return snapshotter;
  },
});
