/** Every top-level CLI command, in help order. */
import type { Command } from 'commander';
import { register as version } from './version.js';
import { register as plugins } from './plugins.js';
import { register as namespaces } from './namespaces.js';
import { register as info } from './info.js';
import { register as content } from './content.js';
import { register as leases } from './leases.js';
import { register as snapshots } from './snapshots.js';
import { register as containers } from './containers.js';
import { register as events } from './events.js';
import { register as run } from './run.js';
import { register as tasks } from './tasks.js';
import { register as images } from './images.js';
import { register as pull } from './pull.js';
import { register as push } from './push.js';
import { register as install } from './install.js';
import { register as snapshotter } from './snapshotter.js';
import { register as oci } from './oci.js';

export const commands: ((program: Command) => void)[] = [
  plugins,
  namespaces,
  info,
  content,
  leases,
  snapshots,
  containers,
  events,
  images,
  pull,
  push,
  run,
  tasks,
  install,
  oci,
  snapshotter,
  version,
];
