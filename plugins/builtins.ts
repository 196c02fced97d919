/**
 * The plugins compiled into berthd, in containerd 1.6's registration order. This list (not
 * import side effects) decides what exists; the kernel orders init by `requires`, breaking
 * ties by position here, so boot order is deterministic.
 */
import type { Registration } from '../core/plugin/types.js';
import { contentPlugin } from './content/local/plugin.js';
import { gcSchedulerPlugin } from './gc/scheduler/plugin.js';
import { contentServicePlugin } from './service/content/plugin.js';
import { leasesServicePlugin } from './service/leases/plugin.js';
import { contentGrpcPlugin } from './grpc/content/plugin.js';
import { leasesGrpcPlugin } from './grpc/leases/plugin.js';
import { btrfsPlugin } from './snapshotter/btrfs/plugin.js';
import { nativePlugin } from './snapshotter/native/plugin.js';
import { overlayfsPlugin } from './snapshotter/overlayfs/plugin.js';
import { metadataPlugin } from './metadata/sqlite/plugin.js';
import { exchangePlugin } from './event/exchange/plugin.js';
import { introspectionServicePlugin } from './service/introspection/plugin.js';
import { namespacesServicePlugin } from './service/namespaces/plugin.js';
import { snapshotsServicePlugin } from './service/snapshots/plugin.js';
import { snapshotsGrpcPlugin } from './grpc/snapshots/plugin.js';
import { containersServicePlugin } from './service/containers/plugin.js';
import { runtimeV1Plugin } from './runtime/v1/plugin.js';
import { runtimeV2Plugin } from './runtime/v2/plugin.js';
import { tasksServicePlugin } from './service/tasks/plugin.js';
import { containersGrpcPlugin } from './grpc/containers/plugin.js';
import { tasksGrpcPlugin } from './grpc/tasks/plugin.js';
import { introspectionGrpcPlugin } from './grpc/introspection/plugin.js';
import { eventsGrpcPlugin } from './grpc/events/plugin.js';
import { healthcheckPlugin } from './grpc/healthcheck/plugin.js';
import { namespacesGrpcPlugin } from './grpc/namespaces/plugin.js';
import { versionPlugin } from './grpc/version/plugin.js';
import { optPlugin } from './internal/opt/plugin.js';
import { walkingDifferPlugin } from './differ/walking/plugin.js';
import { diffServicePlugin } from './service/diff/plugin.js';
import { imagesServicePlugin } from './service/images/plugin.js';
import { diffGrpcPlugin } from './grpc/diff/plugin.js';
import { imagesGrpcPlugin } from './grpc/images/plugin.js';

export const builtins: readonly Registration<any, any>[] = [
  contentPlugin,
  btrfsPlugin,
  nativePlugin,
  overlayfsPlugin,
  metadataPlugin,
  walkingDifferPlugin,
  exchangePlugin,
  gcSchedulerPlugin,
  introspectionServicePlugin,
  containersServicePlugin,
  contentServicePlugin,
  diffServicePlugin,
  imagesServicePlugin,
  leasesServicePlugin,
  namespacesServicePlugin,
  snapshotsServicePlugin,
  runtimeV1Plugin,
  runtimeV2Plugin,
  tasksServicePlugin,
  introspectionGrpcPlugin,
  containersGrpcPlugin,
  contentGrpcPlugin,
  diffGrpcPlugin,
  eventsGrpcPlugin,
  healthcheckPlugin,
  imagesGrpcPlugin,
  leasesGrpcPlugin,
  namespacesGrpcPlugin,
  optPlugin,
  snapshotsGrpcPlugin,
  tasksGrpcPlugin,
  versionPlugin,
];
