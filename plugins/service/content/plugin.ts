/**
 * io.containerd.service.v1.content-service — the namespaced content store with events: a
 * delete publishes /content/delete and tells the gc scheduler something went away.
 */
import { ContentServiceRef, type ContentStore } from '../../../core/content/content.js';
import { packAny } from '../../../core/events/any.js';
import { namespaceRequired } from '../../../core/namespaces/namespaces.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';

export const contentServicePlugin = definePlugin<Record<string, never>, ContentStore>({
  type: ContentServiceRef.type,
  id: ContentServiceRef.id,
  requires: [PluginType.Event, PluginType.Metadata],
  async init(ctx) {
    const metadata = await ctx.get(PluginType.Metadata);
    const events = await ctx.get(PluginType.Event);
    const { ContentDelete } = await import('../../../api/gen/events/content.js');
    const store = metadata.content;
    return {
      info: (c, digest) => store.info(c, digest),
      update: (c, digest, labels, paths) => store.update(c, digest, labels, paths),
      list: (c, filters) => store.list(c, filters),
      read: (c, digest, offset, length) => store.read(c, digest, offset, length),
      readBytes: async (c, digest, offset, length) => store.readBytes?.(c, digest, offset, length),
      status: (c, ref) => store.status(c, ref),
      listStatuses: (c, filters) => store.listStatuses(c, filters),
      abort: (c, ref) => store.abort(c, ref),
      writer: (c, opts) => store.writer(c, opts),
      delete: async (c, digest) => {
        await store.delete(c, digest);
        metadata.markDeletion();
        events.publish(namespaceRequired(c), '/content/delete', packAny('containerd.events.ContentDelete', ContentDelete, { digest }));
      },
    };
  },
});
