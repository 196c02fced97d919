/**
 * io.containerd.service.v1.namespaces-service — namespaces with validation and events
 * (/namespaces/create, /namespaces/update, /namespaces/delete), stored in the metadata.
 */
import { InvalidArgumentError } from '../../../core/errdefs/errdefs.js';
import { packAny } from '../../../core/events/any.js';
import { parseFilters, recordAdaptor } from '../../../core/filters/filters.js';
import { applyLabelMask } from '../../../core/metadata/labels.js';
import { validateNamespace } from '../../../core/namespaces/namespaces.js';
import type { NamespacesService } from '../../../core/namespaces/service.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';

export const namespacesServicePlugin = definePlugin<Record<string, never>, NamespacesService>({
  type: PluginType.Service,
  id: 'namespaces-service',
  requires: [PluginType.Metadata, PluginType.Event],
  async init(ctx) {
    const metadata = await ctx.get(PluginType.Metadata);
    const store = metadata.namespaces;
    const ev = await import('../../../api/gen/events/namespace.js');
    const events = ctx.events;
    return {
      get: (name) => {
        validateNamespace(name);
        // containerd answers a missing namespace with an empty label set rather than NOT_FOUND.
        return store.get(name) ?? { name, labels: {} };
      },
      list: (filters) => {
        const f = parseFilters(filters);
        return store.list().filter((n) => f.match(recordAdaptor({ name: n.name }, n.labels)));
      },
      create: (name, labels) => {
        const ns = store.create(name, labels);
        events.publish(name, '/namespaces/create', packAny('containerd.events.NamespaceCreate', ev.NamespaceCreate, { name, labels }));
        return ns;
      },
      update: (name, labels, paths) => {
        validateNamespace(name);
        for (const p of paths) {
          if (p !== 'labels' && !p.startsWith('labels.')) throw new InvalidArgumentError(`cannot update ${JSON.stringify(p)} field on namespace ${JSON.stringify(name)}`);
        }
        const next = metadata.transaction(() => {
          const current = store.get(name)?.labels ?? {};
          const merged = applyLabelMask(current, labels, paths);
          store.setLabels(name, merged);
          return merged;
        });
        events.publish(name, '/namespaces/update', packAny('containerd.events.NamespaceUpdate', ev.NamespaceUpdate, { name, labels: next }));
        return { name, labels: next };
      },
      delete: (name) => {
        validateNamespace(name);
        store.delete(name);
        events.publish(name, '/namespaces/delete', packAny('containerd.events.NamespaceDelete', ev.NamespaceDelete, { name }));
      },
    };
  },
});
