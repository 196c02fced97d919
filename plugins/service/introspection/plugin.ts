/**
 * io.containerd.service.v1.introspection-service — reports every plugin's status and the
 * server UUID. It reads the live plugin set at call time, so plugins initialised after it
 * are reported too (it needs no dependency edges to see them).
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseFilters } from '../../../core/filters/filters.js';
import type { IntrospectionService } from '../../../core/introspection/introspection.js';
import { definePlugin, PluginType, type PluginResult } from '../../../core/plugin/types.js';

/** Matches a plugin against filters; list fields (capabilities) match when any element does. */
export function filterPlugins(all: readonly PluginResult[], filters: readonly string[]): PluginResult[] {
  const f = parseFilters(filters);
  return all.filter((p) => {
    const caps = p.meta.capabilities.length ? p.meta.capabilities : [undefined];
    return caps.some((cap) =>
      f.match((path) => {
        const field = path.length === 1 ? path[0] : undefined;
        const value = field === 'type' ? p.type : field === 'id' ? p.id : field === 'capabilities' ? cap : undefined;
        return value === undefined ? { value: '', present: false } : { value, present: true };
      }),
    );
  });
}

export const introspectionServicePlugin = definePlugin<Record<string, never>, IntrospectionService>({
  type: PluginType.Service,
  id: 'introspection-service',
  init(ctx) {
    // The uuid lives where containerd keeps it: <root>/io.containerd.grpc.v1.introspection/uuid.
    const uuidFile = join(ctx.daemonRoot, `${PluginType.GRPC}.introspection`, 'uuid');
    let uuid: string | undefined;
    return {
      plugins: (filters) => filterPlugins(ctx.plugins(), filters),
      uuid: () => {
        if (uuid) return uuid;
        try {
          uuid = readFileSync(uuidFile, 'utf8').trim();
        } catch {
          uuid = '';
        }
        if (!uuid) {
          uuid = randomUUID();
          mkdirSync(join(uuidFile, '..'), { recursive: true, mode: 0o711 });
          writeFileSync(uuidFile, uuid, { mode: 0o644 });
        }
        return uuid;
      },
    };
  },
});
