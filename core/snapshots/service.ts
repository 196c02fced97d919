/**
 * The snapshots service's local API (io.containerd.service.v1.snapshots-service): the
 * namespaced snapshotters by name, each publishing /snapshot/prepare, /snapshot/commit and
 * /snapshot/remove events. As in containerd 1.6 the wrappers do not expose Cleanup.
 */
import { PluginType, serviceRef } from '../plugin/types.js';
import type { Snapshotter } from './snapshotter.js';

export interface SnapshotsService {
  /** The snapshotter called `name`; INVALID_ARGUMENT when the name is empty or not loaded. */
  get(name: string): Snapshotter;
  /** Names of the loaded snapshotters. */
  names(): string[];
}

export const SnapshotsServiceRef = serviceRef<SnapshotsService>(PluginType.Service, 'snapshots-service');
