/** Wraps a command action: builds its context, always closes the connection, and exits non-zero on error. */
import type { Command } from 'commander';
import { CliContext, contextOf } from './context.js';

export class UsageError extends Error {}

export type Action = (ctx: CliContext, args: string[], opts: Record<string, any>, cmd: Command) => Promise<void | number>;

export function action(fn: Action) {
  return async (...params: unknown[]) => {
    const cmd = params[params.length - 1] as Command;
    const opts = cmd.opts();
    const ctx = contextOf(cmd);
    try {
      const code = await fn(ctx, cmd.args, opts, cmd);
      if (typeof code === 'number') process.exitCode = code;
    } finally {
      ctx.close();
    }
  };
}

/** Collects a repeatable option into an array. */
export const collect = (value: string, previous: string[] = []) => [...previous, value];
