/** `berth oci spec`: the default OCI runtime spec a container starts from, as `ctr oci spec` prints it. */
import type { Command } from 'commander';
import { action } from '../action.js';

export function register(program: Command): void {
  const oci = program.command('oci').description('OCI tools');
  oci
    .command('spec')
    .description('see the output of the default OCI spec')
    .action(action(async (ctx) => {
      const { defaultSpec } = await import('../../../client/oci/spec.js');
      // ctr generates it for an unnamed container in the command's namespace.
      process.stdout.write(`${JSON.stringify(defaultSpec(ctx.globals.namespace, ''), null, 4)}\n`);
    }));
}
