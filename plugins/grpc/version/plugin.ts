/** io.containerd.grpc.v1.version — Version.Version: server version and revision. */
import { definePlugin, PluginType } from '../../../core/plugin/types.js';
import { implement, type GrpcPlugin } from '../../../core/server/grpc-adapter.js';
import { REVISION, SERVER_VERSION } from '../../../core/version/version.js';

export const versionPlugin = definePlugin<Record<string, never>, GrpcPlugin>({
  type: PluginType.GRPC,
  id: 'version',
  async init(ctx) {
    const { VersionService } = await import('../../../api/gen/services/version/v1/version.js');
    return {
      grpcServices: () => [
        implement(VersionService, { version: async () => ({ version: SERVER_VERSION, revision: REVISION }) }, ctx.log),
      ],
    };
  },
});
