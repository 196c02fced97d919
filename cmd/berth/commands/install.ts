/**
 * `berth install [--libs|-l] [--replace|-r] [--path P] IMAGE` — ctr install: extracts the
 * image's bin/ (and lib/) entries into the daemon's opt directory, or into --path. Runs on
 * the client; the daemon only serves the image record, content and introspection.
 */
import type { Command } from 'commander';
import { action, UsageError } from '../action.js';

export function register(program: Command): void {
  program
    .command('install')
    .description('install a new package')
    .argument('[ref]', 'image to install from')
    .option('-l, --libs', 'install libs from the image')
    .option('-r, --replace', 'replace any binaries or libs in the opt directory')
    .option('--path <dir>', 'set an optional install path other than the managed opt directory')
    .action(action(async (ctx, args, opts) => {
      const ref = args[0];
      if (!ref) throw new UsageError('install: an image reference is required');
      const { installImage } = await import('../../../client/install/index.js');
      const res = await installImage(ctx.connection, ref, {
        libs: !!opts.libs,
        replace: !!opts.replace,
        path: opts.path as string | undefined,
      });
      for (const s of res.skipped) process.stderr.write(`berth: ${s.name} not installed: ${s.reason}\n`);
    }));
}
