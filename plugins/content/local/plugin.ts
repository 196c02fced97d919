/**
 * io.containerd.content.v1.content — the local content store under the plugin root
 * (blobs/ and ingest/, containerd's layout). Exports `root`.
 */
import { parseDuration } from '../../../core/config/duration.js';
import { InvalidArgumentError } from '../../../core/errdefs/errdefs.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';
import type { ContentStore } from '../../../core/content/content.js';

export interface LocalContentConfig {
  /**
   * How long an ingest may sit with no writer and no new data before it is removed (unless a
   * lease or an unexpired metadata record keeps it). Unleased ingests recorded by the metadata
   * store expire after the same age. Default "24h", containerd's fixed value.
   */
  stale_ingest_age: string;
}

export const contentPlugin = definePlugin<LocalContentConfig, ContentStore>({
  type: PluginType.Content,
  id: 'content',
  config: {
    defaults: { stale_ingest_age: '24h' },
    validate: (c) => {
      const ms = parseDuration(String(c.stale_ingest_age), 'stale_ingest_age');
      if (!(ms > 0)) throw new InvalidArgumentError(`stale_ingest_age: must be a positive duration, got ${JSON.stringify(c.stale_ingest_age)}`);
    },
  },
  async init(ctx) {
    const { LocalContentStore } = await import('./store.js');
    const store = await LocalContentStore.open(ctx.root, {
      log: ctx.log,
      staleIngestAgeMs: parseDuration(ctx.config.stale_ingest_age, 'stale_ingest_age'),
    });
    await store.removeIngestDebris();
    store.startJanitor(ctx.signal);
    ctx.meta.exports.root = ctx.root;
    return store;
  },
});
