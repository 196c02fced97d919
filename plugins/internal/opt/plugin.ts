/**
 * io.containerd.internal.v1.opt — the managed directory binaries are installed into
 * (`berth install` / `ctr install` extract an image's /bin and /lib there, client side).
 * Its bin/ and lib/ are put first on the daemon's PATH and LD_LIBRARY_PATH, so shims
 * installed there are found, and its path is exported for clients to discover.
 */
import { mkdirSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { InvalidArgumentError } from '../../../core/errdefs/errdefs.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';

export interface OptConfig {
  /** Where installed binaries and libraries live. Default: /opt/berth (containerd uses /opt/containerd). */
  path: string;
}

export const DEFAULT_OPT_PATH = '/opt/berth';

/** Puts `dir` first in a PATH-like list, once. */
export function prependPath(list: string | undefined, dir: string): string {
  const rest = (list ?? '').split(':').filter((p) => p && p !== dir);
  return [dir, ...rest].join(':');
}

export const optPlugin = definePlugin<OptConfig, { path: string }>({
  type: PluginType.Internal,
  id: 'opt',
  config: {
    defaults: { path: DEFAULT_OPT_PATH },
    validate: (c) => {
      if (!isAbsolute(c.path)) throw new InvalidArgumentError(`path: expected an absolute directory, got ${JSON.stringify(c.path)}`);
    },
  },
  init(ctx) {
    const path = ctx.config.path;
    for (const sub of ['bin', 'lib']) mkdirSync(join(path, sub), { recursive: true, mode: 0o711 });
    process.env.PATH = prependPath(process.env.PATH, join(path, 'bin'));
    process.env.LD_LIBRARY_PATH = prependPath(process.env.LD_LIBRARY_PATH, join(path, 'lib'));
    ctx.meta.exports.path = path;
    return { path };
  },
});
