/**
 * io.containerd.differ.v1.walking — applies layers onto mounts and computes layers between
 * mounted trees, over the namespaced content store of the metadata plugin.
 */
import { join } from 'node:path';
import type { Differ } from '../../../core/diff/diff.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';

export const walkingDifferPlugin = definePlugin<Record<string, never>, Differ>({
  type: PluginType.Differ,
  id: 'walking',
  requires: [PluginType.Metadata],
  async init(ctx) {
    const metadata = await ctx.get(PluginType.Metadata);
    const { WalkingDiffer } = await import('./differ.js');
    const arch = ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[process.arch] ?? process.arch;
    ctx.meta.platforms.push({ os: 'linux', architecture: arch, variant: '' });
    return new WalkingDiffer(metadata.content, { tempMountBase: join(ctx.daemonRoot, 'tmpmounts'), log: ctx.log });
  },
});
