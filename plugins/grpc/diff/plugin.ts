/** io.containerd.grpc.v1.diff — the Diff gRPC service (Apply, Diff) over diff-service. */
import { DiffServiceRef } from '../../../core/diff/diff.js';
import { InvalidArgumentError } from '../../../core/errdefs/errdefs.js';
import type { Descriptor } from '../../../core/images/images.js';
import type { Mount } from '../../../core/mount/types.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';
import { implement, type GrpcPlugin } from '../../../core/server/grpc-adapter.js';
import type { Descriptor as DescriptorPb } from '../../../api/gen/types/descriptor.js';
import type { Mount as MountPb } from '../../../api/gen/types/mount.js';

const toMounts = (ms: readonly MountPb[] | undefined): Mount[] =>
  (ms ?? []).map((m) => ({ type: m.type, source: m.source, target: m.target || undefined, options: [...(m.options ?? [])] }));

function toDescriptor(d: DescriptorPb | undefined): Descriptor {
  if (!d) throw new InvalidArgumentError('diff descriptor is required');
  const out: Descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (Object.keys(d.annotations ?? {}).length) out.annotations = { ...d.annotations };
  return out;
}

const fromDescriptor = (d: Descriptor): DescriptorPb => ({
  mediaType: d.mediaType, digest: d.digest, size: d.size, annotations: { ...(d.annotations ?? {}) },
});

export const diffGrpcPlugin = definePlugin<Record<string, never>, GrpcPlugin>({
  type: PluginType.GRPC,
  id: 'diff',
  requires: [PluginType.Service],
  async init(ctx) {
    const service = await ctx.service(DiffServiceRef);
    const { DiffService } = await import('../../../api/gen/services/diff/v1/diff.js');
    return {
      grpcServices: () => [
        implement(DiffService, {
          apply: async (req, call) => {
            const payloads: Record<string, { typeUrl: string; value: Uint8Array }> = {};
            for (const [k, v] of Object.entries(req.payloads ?? {})) if (v) payloads[k] = v;
            const applied = await service.apply(call, toDescriptor(req.diff), toMounts(req.mounts), { payloads });
            return { applied: fromDescriptor(applied) };
          },
          diff: async (req, call) => {
            const desc = await service.compare(call, toMounts(req.left), toMounts(req.right), {
              mediaType: req.mediaType || undefined,
              ref: req.ref || undefined,
              labels: Object.keys(req.labels ?? {}).length ? req.labels : undefined,
            });
            return { diff: fromDescriptor(desc) };
          },
        }, ctx.log),
      ],
    };
  },
});
