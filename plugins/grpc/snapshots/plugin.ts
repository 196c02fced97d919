/**
 * io.containerd.grpc.v1.snapshots — the Snapshots gRPC service over snapshots-service.
 * List streams infos in batches of at most 100; Cleanup always answers UNIMPLEMENTED
 * "snapshotter does not implement Cleanup method" (what containerd 1.6 does, since its
 * service wrapper hides the backends' Cleanup).
 */
import { NotImplementedError } from '../../../core/errdefs/errdefs.js';
import type { Mount } from '../../../core/mount/types.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';
import { implement, type GrpcPlugin } from '../../../core/server/grpc-adapter.js';
import { SnapshotsServiceRef } from '../../../core/snapshots/service.js';
import { Kind, type SnapshotInfo } from '../../../core/snapshots/snapshotter.js';

const LIST_BATCH = 100;

export const snapshotsGrpcPlugin = definePlugin<Record<string, never>, GrpcPlugin>({
  type: PluginType.GRPC,
  id: 'snapshots',
  requires: [PluginType.Service],
  async init(ctx) {
    const service = await ctx.service(SnapshotsServiceRef);
    const api = await import('../../../api/gen/services/snapshots/v1/snapshots.js');

    const fromKind = (k: Kind) => (k === Kind.Active ? api.Kind.ACTIVE : k === Kind.View ? api.Kind.VIEW : api.Kind.COMMITTED);
    const fromInfo = (i: SnapshotInfo) => ({
      name: i.name, parent: i.parent, kind: fromKind(i.kind), createdAt: i.createdAt, updatedAt: i.updatedAt, labels: i.labels,
    });
    const fromMounts = (ms: Mount[]) => ms.map((m) => ({ type: m.type, source: m.source, target: m.target ?? '', options: m.options }));
    const options = (labels: Record<string, string> | undefined) => (labels && Object.keys(labels).length ? { labels } : undefined);

    return {
      grpcServices: () => [
        implement(api.SnapshotsService, {
          prepare: async (req, c) => ({
            mounts: fromMounts(await service.get(req.snapshotter).prepare(c, req.key, req.parent, options(req.labels))),
          }),
          view: async (req, c) => ({
            mounts: fromMounts(await service.get(req.snapshotter).view(c, req.key, req.parent, options(req.labels))),
          }),
          mounts: async (req, c) => ({ mounts: fromMounts(await service.get(req.snapshotter).mounts(c, req.key)) }),
          commit: async (req, c) => {
            await service.get(req.snapshotter).commit(c, req.name, req.key, options(req.labels));
            return {};
          },
          remove: async (req, c) => {
            await service.get(req.snapshotter).remove(c, req.key);
            return {};
          },
          stat: async (req, c) => ({ info: fromInfo(await service.get(req.snapshotter).stat(c, req.key)) }),
          update: async (req, c) => {
            const sn = service.get(req.snapshotter);
            const info = await sn.update(c, { name: req.info?.name ?? '', labels: req.info?.labels ?? {} }, req.updateMask ?? []);
            return { info: fromInfo(info) };
          },
          list: async (req, c, send) => {
            const sn = service.get(req.snapshotter);
            let batch: ReturnType<typeof fromInfo>[] = [];
            await sn.walk(c, async (info) => {
              batch.push(fromInfo(info));
              if (batch.length >= LIST_BATCH) {
                const full = batch;
                batch = [];
                await send({ info: full });
              }
            }, req.filters);
            if (batch.length) await send({ info: batch });
          },
          usage: async (req, c) => {
            const u = await service.get(req.snapshotter).usage(c, req.key);
            return { size: u.size, inodes: u.inodes };
          },
          cleanup: async (req) => {
            service.get(req.snapshotter);
            throw new NotImplementedError('snapshotter does not implement Cleanup method');
          },
        }, ctx.log),
      ],
    };
  },
});
