/**
 * io.containerd.service.v1.snapshots-service — the metadata store's namespaced snapshotters,
 * each wrapped to publish events after a successful Prepare (/snapshot/prepare), Commit
 * (/snapshot/commit) and Remove (/snapshot/remove). View publishes nothing, and Cleanup is
 * not passed through (containerd 1.6 answers it with "not implemented").
 */
import { InvalidArgumentError } from '../../../core/errdefs/errdefs.js';
import { packAny } from '../../../core/events/any.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';
import type { SnapshotsService } from '../../../core/snapshots/service.js';
import type { Snapshotter } from '../../../core/snapshots/snapshotter.js';

export const snapshotsServicePlugin = definePlugin<Record<string, never>, SnapshotsService>({
  type: PluginType.Service,
  id: 'snapshots-service',
  requires: [PluginType.Event, PluginType.Metadata],
  async init(ctx) {
    const metadata = await ctx.get(PluginType.Metadata);
    const ev = await import('../../../api/gen/events/snapshot.js');
    const events = ctx.events;
    const wrapped = new Map<string, Snapshotter>();
    for (const [name, sn] of metadata.snapshotters) {
      wrapped.set(name, {
        stat: (c, key) => sn.stat(c, key),
        update: (c, info, paths) => sn.update(c, info, paths),
        usage: (c, key) => sn.usage(c, key),
        mounts: (c, key) => sn.mounts(c, key),
        view: (c, key, parent, opts) => sn.view(c, key, parent, opts),
        walk: (c, fn, filters) => sn.walk(c, fn, filters),
        close: async () => undefined,
        prepare: async (c, key, parent, opts) => {
          const mounts = await sn.prepare(c, key, parent, opts);
          events.publish(c.namespace!, '/snapshot/prepare', packAny('containerd.events.SnapshotPrepare', ev.SnapshotPrepare, { key, parent }));
          return mounts;
        },
        commit: async (c, name, key, opts) => {
          await sn.commit(c, name, key, opts);
          events.publish(c.namespace!, '/snapshot/commit', packAny('containerd.events.SnapshotCommit', ev.SnapshotCommit, { key, name }));
        },
        remove: async (c, key) => {
          await sn.remove(c, key);
          events.publish(c.namespace!, '/snapshot/remove', packAny('containerd.events.SnapshotRemove', ev.SnapshotRemove, { key }));
        },
      });
    }
    return {
      get(name) {
        if (!name) throw new InvalidArgumentError('snapshotter argument missing');
        const sn = wrapped.get(name);
        if (!sn) throw new InvalidArgumentError(`snapshotter not loaded: ${name}`);
        return sn;
      },
      names: () => [...wrapped.keys()],
    };
  },
});
