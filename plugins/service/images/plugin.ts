/**
 * io.containerd.service.v1.images-service — image records in the metadata store, publishing
 * /images/create, /images/update and /images/delete (payloads in containerd.services.images.v1),
 * and waiting for a garbage collection on a synchronous delete.
 */
import { InvalidArgumentError } from '../../../core/errdefs/errdefs.js';
import { packAny } from '../../../core/events/any.js';
import { ImageEventType, type ImagesService } from '../../../core/images/images.js';
import type { GcScheduler } from '../../../core/metadata/metadata.js';
import { namespaceRequired } from '../../../core/namespaces/namespaces.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';

/** The decoded payload as the flat fields `event.<field>` filters look at. */
const eventFields = (msg: { name: string; labels?: Record<string, string> }): Record<string, unknown> =>
  msg.labels ? { name: msg.name, labels: msg.labels } : { name: msg.name };

export const imagesServicePlugin = definePlugin<Record<string, never>, ImagesService>({
  type: PluginType.Service,
  id: 'images-service',
  requires: [PluginType.Event, PluginType.Metadata, PluginType.GC],
  async init(ctx) {
    const metadata = await ctx.get(PluginType.Metadata);
    // The gc scheduler may be absent (or disabled): then a synchronous delete collects directly.
    let scheduler: GcScheduler | undefined;
    try {
      scheduler = await ctx.get(PluginType.GC);
    } catch {
      scheduler = undefined;
    }
    const store = metadata.images;
    const ev = await import('../../../api/gen/events/image.js');
    const events = ctx.events;
    events.registerDecoder(ImageEventType.create, (v) => eventFields(ev.ImageCreate.decode(v)));
    events.registerDecoder(ImageEventType.update, (v) => eventFields(ev.ImageUpdate.decode(v)));
    events.registerDecoder(ImageEventType.delete, (v) => eventFields(ev.ImageDelete.decode(v)));
    return {
      get: (rc, name) => store.get(rc, name),
      list: (rc, filters) => store.list(rc, filters),
      create: async (rc, image) => {
        if (!image.name) throw new InvalidArgumentError('Image.Name required');
        const created = await store.create(rc, image);
        events.publish(namespaceRequired(rc), '/images/create', packAny(ImageEventType.create, ev.ImageCreate, {
          name: created.name,
          labels: created.labels,
        }));
        return created;
      },
      update: async (rc, image, paths) => {
        if (!image.name) throw new InvalidArgumentError('Image.Name required');
        const updated = await store.update(rc, image, paths);
        events.publish(namespaceRequired(rc), '/images/update', packAny(ImageEventType.update, ev.ImageUpdate, {
          name: updated.name,
          labels: updated.labels,
        }));
        return updated;
      },
      delete: async (rc, name, sync) => {
        await store.delete(rc, name);
        metadata.markDeletion();
        events.publish(namespaceRequired(rc), '/images/delete', packAny(ImageEventType.delete, ev.ImageDelete, { name }));
        if (sync) {
          if (scheduler) await scheduler.scheduleAndWait(rc.signal);
          else await metadata.collectGarbage();
        }
      },
    };
  },
});
