/** Every top-level CLI command, in help order. */
import type { Command } from 'commander';
import { register as version } from './version.js';
import { register as plugins } from './plugins.js';
import { register as namespaces } from './namespaces.js';
import { register as info } from './info.js';

export const commands: ((program: Command) => void)[] = [
  plugins,
  namespaces,
  info,
  version,
];
