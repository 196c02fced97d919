/** io.containerd.grpc.v1.containers — the Containers gRPC service over containers-service. */
import { ContainersServiceRef, type Container } from '../../../core/containers/containers.js';
import { InvalidArgumentError } from '../../../core/errdefs/errdefs.js';
import type { AnyMessage } from '../../../core/events/exchange.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';
import { implement, type GrpcPlugin } from '../../../core/server/grpc-adapter.js';
import type { Container as ContainerPb } from '../../../api/gen/services/containers/v1/containers.js';

const anyOut = (a: AnyMessage | undefined) => (a ? { typeUrl: a.typeUrl, value: Buffer.from(a.value) } : undefined);

export function containerToProto(c: Container): ContainerPb {
  const extensions: ContainerPb['extensions'] = {};
  for (const [k, v] of Object.entries(c.extensions)) extensions[k] = anyOut(v)!;
  return {
    id: c.id,
    labels: c.labels,
    image: c.image,
    runtime: { name: c.runtime.name, options: anyOut(c.runtime.options) },
    spec: anyOut(c.spec),
    snapshotter: c.snapshotter,
    snapshotKey: c.snapshotKey,
    createdAt: c.createdAt,
    updatedAt: c.updatedAt,
    extensions,
  };
}

/** The request's container; created_at/updated_at the Go client always sends are ignored. */
export function containerFromProto(c: ContainerPb | undefined): Omit<Container, 'createdAt' | 'updatedAt'> {
  if (!c) throw new InvalidArgumentError('container is required');
  const extensions: Container['extensions'] = {};
  for (const [k, v] of Object.entries(c.extensions ?? {})) if (v) extensions[k] = v;
  return {
    id: c.id,
    labels: c.labels ?? {},
    image: c.image,
    runtime: { name: c.runtime?.name ?? '', options: c.runtime?.options },
    spec: c.spec,
    snapshotter: c.snapshotter,
    snapshotKey: c.snapshotKey,
    extensions,
  };
}

export const containersGrpcPlugin = definePlugin<Record<string, never>, GrpcPlugin>({
  type: PluginType.GRPC,
  id: 'containers',
  requires: [PluginType.Service],
  async init(ctx) {
    const service = await ctx.service(ContainersServiceRef);
    const { ContainersService } = await import('../../../api/gen/services/containers/v1/containers.js');
    return {
      grpcServices: () => [
        implement(ContainersService, {
          get: async (req, call) => ({ container: containerToProto(await service.get(call, req.id)) }),
          list: async (req, call) => ({ containers: (await service.list(call, req.filters)).map(containerToProto) }),
          listStream: async (req, call, send) => {
            for (const c of await service.list(call, req.filters)) await send({ container: containerToProto(c) });
          },
          create: async (req, call) => ({ container: containerToProto(await service.create(call, containerFromProto(req.container))) }),
          update: async (req, call) => ({
            container: containerToProto(await service.update(call, containerFromProto(req.container), req.updateMask ?? [])),
          }),
          delete: async (req, call) => {
            await service.delete(call, req.id);
            return {};
          },
        }, ctx.log),
      ],
    };
  },
});
