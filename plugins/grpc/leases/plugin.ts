/** io.containerd.grpc.v1.leases — the Leases gRPC service over leases-service. */
import { LeasesServiceRef, type Lease } from '../../../core/leases/leases.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';
import { implement, type GrpcPlugin } from '../../../core/server/grpc-adapter.js';

const leaseToGrpc = (l: Lease) => ({ id: l.id, createdAt: l.createdAt, labels: l.labels });

export const leasesGrpcPlugin = definePlugin<Record<string, never>, GrpcPlugin>({
  type: PluginType.GRPC,
  id: 'leases',
  requires: [PluginType.Service],
  async init(ctx) {
    const leases = await ctx.service(LeasesServiceRef);
    const { LeasesService } = await import('../../../api/gen/services/leases/v1/leases.js');
    const resourceOf = (r: { id: string; type: string } | undefined) => ({ id: r?.id ?? '', type: r?.type ?? '' });
    return {
      grpcServices: () => [
        implement(LeasesService, {
          create: async (req, c) => ({ lease: leaseToGrpc(await leases.create(c, req.id, req.labels ?? {})) }),
          delete: async (req, c) => {
            await leases.delete(c, req.id, req.sync);
            return {};
          },
          list: async (req, c) => ({ leases: (await leases.list(c, req.filters ?? [])).map(leaseToGrpc) }),
          addResource: async (req, c) => {
            await leases.addResource(c, req.id, resourceOf(req.resource));
            return {};
          },
          deleteResource: async (req, c) => {
            await leases.deleteResource(c, req.id, resourceOf(req.resource));
            return {};
          },
          listResources: async (req, c) => ({ resources: await leases.listResources(c, req.id) }),
        }, ctx.log),
      ],
    };
  },
});
