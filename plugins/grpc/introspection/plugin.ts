/** io.containerd.grpc.v1.introspection — Introspection.Plugins and Introspection.Server over gRPC. */
import { codeOf, Code } from '../../../core/errdefs/errdefs.js';
import { IntrospectionServiceRef } from '../../../core/introspection/introspection.js';
import { definePlugin, PluginType, SkipPluginError } from '../../../core/plugin/types.js';
import { implement, type GrpcPlugin } from '../../../core/server/grpc-adapter.js';

export const introspectionGrpcPlugin = definePlugin<Record<string, never>, GrpcPlugin>({
  type: PluginType.GRPC,
  id: 'introspection',
  requires: [PluginType.Service],
  async init(ctx) {
    const service = await ctx.service(IntrospectionServiceRef);
    const { IntrospectionService } = await import('../../../api/gen/services/introspection/v1/introspection.js');
    return {
      grpcServices: () => [
        implement(IntrospectionService, {
          plugins: async (req) => ({
            plugins: service.plugins(req.filters).map((p) => ({
              type: p.type,
              id: p.id,
              requires: p.requires,
              platforms: p.meta.platforms,
              exports: p.meta.exports,
              capabilities: p.meta.capabilities,
              // containerd reports a skip as an unclassified error whose text ends in "skip plugin".
              initErr: p.error
                ? { code: p.error instanceof SkipPluginError ? Code.UNKNOWN : codeOf(p.error), message: p.error.message, details: [] }
                : undefined,
            })),
          }),
          server: async () => ({ uuid: service.uuid() }),
        }, ctx.log),
      ],
    };
  },
});
