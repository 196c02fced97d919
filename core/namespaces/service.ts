/** The namespaces service's local API (validation, events, metadata). */
import { PluginType, serviceRef } from '../plugin/types.js';
import type { Labels, Namespace } from '../metadata/metadata.js';

export interface NamespacesService {
  get(name: string): Namespace;
  list(filters: readonly string[]): Namespace[];
  create(name: string, labels: Labels): Namespace;
  /** Applies `labels` under the field mask `paths` (`labels`, `labels.<key>`; none = replace). */
  update(name: string, labels: Labels, paths: readonly string[]): Namespace;
  delete(name: string): void;
}

export const NamespacesServiceRef = serviceRef<NamespacesService>(PluginType.Service, 'namespaces-service');
