/**
 * io.containerd.service.v1.leases-service — the metadata lease manager; a synchronous delete
 * waits for the garbage collection that removes what only the lease kept.
 */
import { LeasesServiceRef, type LeaseManager } from '../../../core/leases/leases.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';

export const leasesServicePlugin = definePlugin<Record<string, never>, LeaseManager>({
  type: LeasesServiceRef.type,
  id: LeasesServiceRef.id,
  requires: [PluginType.Metadata, PluginType.GC],
  async init(ctx) {
    const metadata = await ctx.get(PluginType.Metadata);
    const gc = await ctx.get(PluginType.GC);
    const leases = metadata.leases;
    return {
      create: (c, id, labels) => leases.create(c, id, labels),
      list: (c, filters) => leases.list(c, filters),
      addResource: (c, lease, r) => leases.addResource(c, lease, r),
      deleteResource: (c, lease, r) => leases.deleteResource(c, lease, r),
      listResources: (c, lease) => leases.listResources(c, lease),
      delete: async (c, id, sync) => {
        await leases.delete(c, id);
        if (sync) await gc.scheduleAndWait(c.signal);
      },
    };
  },
});
