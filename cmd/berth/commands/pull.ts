/** `berth pull`: the same as `berth images pull` (ctr's flags and output). */
import type { Command } from 'commander';
import { pullCommand } from './images.js';

export function register(program: Command): void {
  pullCommand(program);
}
