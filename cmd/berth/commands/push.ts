/** `berth push`: the same as `berth images push` (ctr's flags and output). */
import type { Command } from 'commander';
import { pushCommand } from './images.js';

export function register(program: Command): void {
  pushCommand(program);
}
