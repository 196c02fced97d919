/**
 * io.containerd.service.v1.diff-service — the differs named in its `default` list, tried in
 * order: a differ that answers NOT_IMPLEMENTED passes the request to the next one.
 */
import type { Differ } from '../../../core/diff/diff.js';
import { InvalidArgumentError, isNotImplemented, NotImplementedError } from '../../../core/errdefs/errdefs.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';

export interface DiffServiceConfig {
  default: string[];
}

/** Runs `fn` on each differ until one answers something other than NOT_IMPLEMENTED. */
async function firstImplemented<T>(differs: readonly Differ[], fn: (d: Differ) => Promise<T>): Promise<T> {
  let last: unknown = new NotImplementedError('no differ configured');
  for (const d of differs) {
    try {
      return await fn(d);
    } catch (err) {
      if (!isNotImplemented(err)) throw err;
      last = err;
    }
  }
  throw last;
}

export const diffServicePlugin = definePlugin<DiffServiceConfig, Differ>({
  type: PluginType.Service,
  id: 'diff-service',
  requires: [PluginType.Differ],
  config: {
    defaults: { default: ['walking'] },
    validate: (c) => {
      if (!Array.isArray(c.default) || c.default.some((n) => typeof n !== 'string')) {
        throw new InvalidArgumentError('default: expected a list of differ names');
      }
    },
  },
  async init(ctx) {
    const available = await ctx.getByType(PluginType.Differ);
    const differs = ctx.config.default.map((name) => {
      const d = available.get(name);
      if (!d) throw new Error(`needed differ not loaded: ${name}`);
      return d;
    });
    return {
      apply: (rc, desc, mounts, opts) => firstImplemented(differs, (d) => d.apply(rc, desc, mounts, opts)),
      compare: (rc, lower, upper, opts) => firstImplemented(differs, (d) => d.compare(rc, lower, upper, opts)),
    };
  },
});
