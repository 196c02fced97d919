/**
 * io.containerd.service.v1.containers-service — container records in the metadata store,
 * publishing /containers/create, /containers/update and /containers/delete.
 */
import type { ContainersService } from '../../../core/containers/containers.js';
import { InvalidArgumentError } from '../../../core/errdefs/errdefs.js';
import { packAny } from '../../../core/events/any.js';
import { namespaceRequired } from '../../../core/namespaces/namespaces.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';
import { eventFields } from './events.js';

export const containersServicePlugin = definePlugin<Record<string, never>, ContainersService>({
  type: PluginType.Service,
  id: 'containers-service',
  requires: [PluginType.Event, PluginType.Metadata],
  async init(ctx) {
    const metadata = await ctx.get(PluginType.Metadata);
    const store = metadata.containers;
    const ev = await import('../../../api/gen/events/container.js');
    const events = ctx.events;
    events.registerDecoder('containerd.events.ContainerCreate', (v) => eventFields(ev.ContainerCreate.decode(v)));
    events.registerDecoder('containerd.events.ContainerUpdate', (v) => eventFields(ev.ContainerUpdate.decode(v)));
    events.registerDecoder('containerd.events.ContainerDelete', (v) => eventFields(ev.ContainerDelete.decode(v)));
    return {
      get: (rc, id) => store.get(rc, id),
      list: (rc, filters) => store.list(rc, filters),
      create: async (rc, c) => {
        const created = await store.create(rc, c);
        events.publish(namespaceRequired(rc), '/containers/create', packAny('containerd.events.ContainerCreate', ev.ContainerCreate, {
          id: created.id,
          image: created.image,
          runtime: {
            name: created.runtime.name,
            options: created.runtime.options && { typeUrl: created.runtime.options.typeUrl, value: Buffer.from(created.runtime.options.value) },
          },
        }));
        return created;
      },
      update: async (rc, c, paths) => {
        if (!c.id) throw new InvalidArgumentError('Container.ID required');
        const updated = await store.update(rc, c, paths);
        events.publish(namespaceRequired(rc), '/containers/update', packAny('containerd.events.ContainerUpdate', ev.ContainerUpdate, {
          id: updated.id,
          image: updated.image,
          labels: updated.labels,
          snapshotKey: updated.snapshotKey,
        }));
        return updated;
      },
      delete: async (rc, id) => {
        await store.delete(rc, id);
        metadata.markDeletion();
        events.publish(namespaceRequired(rc), '/containers/delete', packAny('containerd.events.ContainerDelete', ev.ContainerDelete, { id }));
      },
    };
  },
});
