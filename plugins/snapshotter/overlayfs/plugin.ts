/**
 * io.containerd.snapshotter.v1.overlayfs — layers as overlayfs upper/lower directories.
 * Skipped (not failed) on hosts where overlay cannot work at the root: no d_type on the
 * backing filesystem, or the kernel refuses a multi-layer overlay mount there.
 */
import { mkdirSync } from 'node:fs';
import { messageOf } from '../../../core/errdefs/errdefs.js';
import { definePlugin, PluginType, SkipPluginError } from '../../../core/plugin/types.js';
import type { Snapshotter } from '../../../core/snapshots/snapshotter.js';
import { checkRootPath, checkStringList, hostPlatform } from '../common.js';

export interface OverlayConfig {
  /** Root directory of the snapshotter; default: the plugin's own directory under the daemon root. */
  root_path: string;
  /** Report each snapshot's upper dir in label `containerd.io/snapshot/overlay.upperdir`. */
  upperdir_label: boolean;
  /** Delete a removed snapshot's directory during Remove instead of at the next cleanup (gc). */
  sync_remove: boolean;
  /** Extra options added to every overlay mount. */
  mount_options: string[];
}

export const overlayfsPlugin = definePlugin<OverlayConfig, Snapshotter>({
  type: PluginType.Snapshotter,
  id: 'overlayfs',
  config: {
    defaults: { root_path: '', upperdir_label: false, sync_remove: false, mount_options: [] },
    validate: (c) => {
      checkRootPath(c.root_path);
      checkStringList('mount_options', c.mount_options);
    },
  },
  async init(ctx) {
    ctx.meta.platforms.push(hostPlatform());
    const root = ctx.config.root_path || ctx.root;
    ctx.meta.exports.root = root;
    const support = await import('./support.js');
    mkdirSync(root, { recursive: true, mode: 0o700 });
    if (!support.supportsDType(root)) {
      throw new SkipPluginError(`${root} does not support d_type. If the backing filesystem is xfs, please reformat with ftype=1 to enable d_type support`);
    }
    const indexOff = support.supportsIndex();
    const userxattr = support.needsUserXAttr(root);
    const probeOptions = [...(indexOff ? ['index=off'] : []), ...(userxattr ? ['userxattr'] : [])];
    support.removeStaleProbes(root);
    try {
      await support.probeOverlayMount(root, probeOptions);
    } catch (err) {
      throw new SkipPluginError(`overlayfs is not supported on ${root}: ${messageOf(err)}`);
    }
    const { OverlaySnapshotter } = await import('./overlay.js');
    const snapshotter = new OverlaySnapshotter(root, {
      asyncRemove: !ctx.config.sync_remove,
      upperdirLabel: ctx.config.upperdir_label,
      mountOptions: ctx.config.mount_options,
      indexOff,
      userxattr,
      log: ctx.log,
    });
    // Directories whose records are gone (removed before a restart, or a crash mid-create).
    snapshotter.cleanup().catch((err) => ctx.log.warn('cleanup of orphaned snapshot directories failed', { error: messageOf(err) }));
    return snapshotter;
  },
});
