/** io.containerd.grpc.v1.healthcheck — grpc.health.v1.Health; the daemon serves once booted. */
import { definePlugin, PluginType } from '../../../core/plugin/types.js';
import { implement, type GrpcPlugin } from '../../../core/server/grpc-adapter.js';

export const healthcheckPlugin = definePlugin<Record<string, never>, GrpcPlugin>({
  type: PluginType.GRPC,
  id: 'healthcheck',
  async init(ctx) {
    const { HealthService, HealthCheckResponse_ServingStatus: Serving } = await import('../../../api/gen/grpc/health/v1/health.js');
    return {
      grpcServices: () => [
        implement(HealthService, {
          check: async () => ({ status: Serving.SERVING }),
          // Sends the current status, then holds the stream open until the client leaves.
          watch: async (_req, call, send) => {
            await send({ status: Serving.SERVING });
            await new Promise<void>((resolve) => {
              if (call.signal.aborted) resolve();
              else call.signal.addEventListener('abort', () => resolve(), { once: true });
            });
          },
        }, ctx.log),
      ],
    };
  },
});
