/** io.containerd.grpc.v1.images — the Images gRPC service over images-service. */
import { InvalidArgumentError } from '../../../core/errdefs/errdefs.js';
import { ImagesServiceRef, type Descriptor, type Image, type ImageInput } from '../../../core/images/images.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';
import { implement, type GrpcPlugin } from '../../../core/server/grpc-adapter.js';
import type { Image as ImagePb } from '../../../api/gen/services/images/v1/images.js';
import type { Descriptor as DescriptorPb } from '../../../api/gen/types/descriptor.js';

export function descriptorToProto(d: Descriptor): DescriptorPb {
  return { mediaType: d.mediaType, digest: d.digest, size: d.size, annotations: { ...(d.annotations ?? {}) } };
}

export function descriptorFromProto(d: DescriptorPb | undefined): Descriptor {
  const out: Descriptor = { mediaType: d?.mediaType ?? '', digest: d?.digest ?? '', size: d?.size ?? 0 };
  if (d && Object.keys(d.annotations ?? {}).length) out.annotations = { ...d.annotations };
  return out;
}

export function imageToProto(i: Image): ImagePb {
  return { name: i.name, labels: i.labels, target: descriptorToProto(i.target), createdAt: i.createdAt, updatedAt: i.updatedAt };
}

/** The request's image; created_at/updated_at the Go client always sends are ignored. */
export function imageFromProto(i: ImagePb | undefined): ImageInput {
  if (!i) throw new InvalidArgumentError('Image.Name required');
  return { name: i.name, labels: i.labels ?? {}, target: descriptorFromProto(i.target) };
}

export const imagesGrpcPlugin = definePlugin<Record<string, never>, GrpcPlugin>({
  type: PluginType.GRPC,
  id: 'images',
  requires: [PluginType.Service],
  async init(ctx) {
    const service = await ctx.service(ImagesServiceRef);
    const { ImagesService } = await import('../../../api/gen/services/images/v1/images.js');
    return {
      grpcServices: () => [
        implement(ImagesService, {
          get: async (req, call) => ({ image: imageToProto(await service.get(call, req.name)) }),
          list: async (req, call) => ({ images: (await service.list(call, req.filters)).map(imageToProto) }),
          create: async (req, call) => ({ image: imageToProto(await service.create(call, imageFromProto(req.image))) }),
          update: async (req, call) => ({
            image: imageToProto(await service.update(call, imageFromProto(req.image), req.updateMask ?? [])),
          }),
          delete: async (req, call) => {
            await service.delete(call, req.name, req.sync);
            return {};
          },
        }, ctx.log),
      ],
    };
  },
});
