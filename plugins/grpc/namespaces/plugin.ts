/** io.containerd.grpc.v1.namespaces — the Namespaces gRPC service over namespaces-service. */
import { NamespacesServiceRef } from '../../../core/namespaces/service.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';
import { implement, type GrpcPlugin } from '../../../core/server/grpc-adapter.js';

export const namespacesGrpcPlugin = definePlugin<Record<string, never>, GrpcPlugin>({
  type: PluginType.GRPC,
  id: 'namespaces',
  requires: [PluginType.Service],
  async init(ctx) {
    const service = await ctx.service(NamespacesServiceRef);
    const { NamespacesService } = await import('../../../api/gen/services/namespaces/v1/namespace.js');
    return {
      grpcServices: () => [
        implement(NamespacesService, {
          get: async (req) => ({ namespace: service.get(req.name) }),
          list: async (req) => ({ namespaces: service.list(req.filter ? [req.filter] : []) }),
          create: async (req) => ({ namespace: service.create(req.namespace?.name ?? '', req.namespace?.labels ?? {}) }),
          update: async (req) => ({
            namespace: service.update(req.namespace?.name ?? '', req.namespace?.labels ?? {}, req.updateMask ?? []),
          }),
          delete: async (req) => {
            service.delete(req.name);
            return {};
          },
        }, ctx.log),
      ],
    };
  },
});
