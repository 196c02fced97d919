/**
 * io.containerd.differ.v1.walking — applies layers onto mounts and computes layers between
 * mounted trees, over the namespaced content store of the metadata plugin.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Differ } from '../../../core/diff/diff.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';

export const walkingDifferPlugin = definePlugin<Record<string, never>, Differ>({
  type: PluginType.Differ,
  id: 'walking',
  requires: [PluginType.Metadata],
  async init(ctx) {
    const metadata = await ctx.get(PluginType.Metadata);
    const tempMountBase = join(ctx.daemonRoot, 'tmpmounts');
    // Temporary mounts a killed daemon left behind (a diff or apply in progress) go first.
    if (hasEntries(tempMountBase)) {
      const { cleanupTempMounts } = await import('../../../core/mount/temp.js');
      await cleanupTempMounts(tempMountBase, (path, err) => {
        if (err) ctx.log.error('failed to remove a temporary mount left by a previous run', { path, error: err.message });
        else ctx.log.warn('removed a temporary mount left by a previous run', { path });
      });
    }
    const arch = ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[process.arch] ?? process.arch;
    ctx.meta.platforms.push({ os: 'linux', architecture: arch, variant: '' });
    // The differ's code (tar, compression, its worker) loads with the first layer, not at
    // boot: a daemon that never pulls or diffs does not pay for it.
    let differ: Promise<Differ> | undefined;
    const load = () => (differ ??= import('./differ.js').then(({ WalkingDiffer }) => new WalkingDiffer(metadata.content, { tempMountBase, log: ctx.log })));
    return {
      apply: async (rctx, desc, mounts, opts) => (await load()).apply(rctx, desc, mounts, opts),
      compare: async (rctx, lower, upper, opts) => (await load()).compare(rctx, lower, upper, opts),
    };
  },
});

function hasEntries(dir: string): boolean {
  try {
    return readdirSync(dir).length > 0;
  } catch {
    return false;
  }
}
