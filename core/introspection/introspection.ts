/** The introspection service's local API: the plugin set and the server's identity. */
import { PluginType, serviceRef, type PluginResult } from '../plugin/types.js';

export interface IntrospectionService {
  /** Plugin results matching containerd filters (fields: type, id, capabilities). */
  plugins(filters: readonly string[]): PluginResult[];
  /** The server's UUID, generated once and persisted under the root. */
  uuid(): string;
}

export const IntrospectionServiceRef = serviceRef<IntrospectionService>(PluginType.Service, 'introspection-service');
