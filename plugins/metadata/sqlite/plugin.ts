/**
 * io.containerd.metadata.v1.sqlite — the namespaced metadata store (containerd's is bolt).
 * An embedded SQLite database in WAL mode: ACID transactions, crash-safe, one file.
 */
import { join } from 'node:path';
import { InvalidArgumentError } from '../../../core/errdefs/errdefs.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';
import type { Metadata } from '../../../core/metadata/metadata.js';

export interface MetadataConfig {
  /** "shared" (a blob committed in one namespace can be linked into another without its data) or "isolated". Default: shared. */
  content_sharing_policy: string;
}

export const metadataPlugin = definePlugin<MetadataConfig, Metadata>({
  type: PluginType.Metadata,
  id: 'sqlite',
  requires: [PluginType.Content, PluginType.Snapshotter],
  config: {
    defaults: { content_sharing_policy: 'shared' },
    // containerd's metadata plugin is bolt; its content_sharing_policy means the same here.
    sectionAliases: ['io.containerd.metadata.v1.bolt'],
    validate: (c) => {
      if (c.content_sharing_policy !== 'shared' && c.content_sharing_policy !== 'isolated') {
        throw new InvalidArgumentError(`content_sharing_policy: expected "shared" or "isolated", got ${JSON.stringify(c.content_sharing_policy)}`);
      }
    },
  },
  async init(ctx) {
    const { openDatabase } = await import('./database.js');
    const { SqliteMetadata } = await import('./metadata.js');
    const path = join(ctx.root, 'meta.db');
    const metadata = new SqliteMetadata(openDatabase(path), path);
    const { attachContent } = await import('./content.js');
    const { attachLeases } = await import('./leases.js');
    metadata.leases = attachLeases(metadata);
    metadata.content = attachContent(metadata, await ctx.get(PluginType.Content), { shared: ctx.config.content_sharing_policy === 'shared', log: ctx.log });
    const { SqliteContainerStore } = await import('./containers.js');
    const containers = new SqliteContainerStore(metadata.db, metadata.namespaces);
    metadata.containers = containers;
    metadata.addNamespaceResource(containers);
    metadata.addGcSource(containers);
    const { SqliteImageStore } = await import('./images.js');
    const images = new SqliteImageStore(metadata.db, metadata.namespaces);
    metadata.images = images;
    metadata.addNamespaceResource(images);
    metadata.addGcSource(images);
    const { attachSnapshotters } = await import('./snapshots.js');
    attachSnapshotters(metadata, await ctx.getByType(PluginType.Snapshotter).catch(() => new Map()), ctx.log);
    ctx.meta.exports.path = path;
    ctx.meta.exports.policy = ctx.config.content_sharing_policy;
    return metadata;
  },
});
