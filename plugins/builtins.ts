/**
 * The plugins compiled into berthd, in containerd 1.6's registration order. This list (not
 * import side effects) decides what exists; the kernel orders init by `requires`, breaking
 * ties by position here, so boot order is deterministic.
 */
import type { Registration } from '../core/plugin/types.js';
import { metadataPlugin } from './metadata/sqlite/plugin.js';
import { exchangePlugin } from './event/exchange/plugin.js';
import { introspectionServicePlugin } from './service/introspection/plugin.js';
import { namespacesServicePlugin } from './service/namespaces/plugin.js';
import { introspectionGrpcPlugin } from './grpc/introspection/plugin.js';
import { eventsGrpcPlugin } from './grpc/events/plugin.js';
import { healthcheckPlugin } from './grpc/healthcheck/plugin.js';
import { namespacesGrpcPlugin } from './grpc/namespaces/plugin.js';
import { versionPlugin } from './grpc/version/plugin.js';

export const builtins: readonly Registration<any, any>[] = [
  metadataPlugin,
  exchangePlugin,
  introspectionServicePlugin,
  namespacesServicePlugin,
  introspectionGrpcPlugin,
  eventsGrpcPlugin,
  healthcheckPlugin,
  namespacesGrpcPlugin,
  versionPlugin,
];
