/** io.containerd.event.v1.exchange — exposes the kernel's event exchange as a plugin others require. */
import type { EventExchange } from '../../../core/events/exchange.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';

declare module '../../../core/plugin/types.js' {
  interface PluginTypeMap {
    [PluginType.Event]: EventExchange;
  }
}

export const exchangePlugin = definePlugin<Record<string, never>, EventExchange>({
  type: PluginType.Event,
  id: 'exchange',
  init: (ctx) => ctx.events,
});
