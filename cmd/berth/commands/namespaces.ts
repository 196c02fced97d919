/** `berth namespaces create|ls|label|rm`, with ctr's flags and output. */
import type { Command } from 'commander';
import { action, UsageError } from '../action.js';
import { goTabwriter, labelString, logLine, parseLabelArgs } from '../output.js';
import { isNotFound } from '../../../core/errdefs/errdefs.js';

export function register(program: Command): void {
  const ns = program.command('namespaces').alias('namespace').alias('ns').description('manage namespaces');
  ns.command('create')
    .alias('c')
    .description('create a new namespace')
    .argument('<name>')
    .argument('[labels...]', 'key=value labels')
    .action(action(async (ctx, [name, ...labels]) => {
      const { NamespacesDefinition } = await import('../../../api/gen/services/namespaces/v1/namespace.js');
      await ctx.connection.service(NamespacesDefinition).create({ namespace: { name, labels: parseLabelArgs(labels) } });
    }));
  ns.command('list')
    .alias('ls')
    .description('list namespaces')
    .option('-q, --quiet', 'print only the namespace name')
    .action(action(async (ctx, _args, opts) => {
      const { NamespacesDefinition } = await import('../../../api/gen/services/namespaces/v1/namespace.js');
      const { namespaces } = await ctx.connection.service(NamespacesDefinition).list({});
      if (opts.quiet) { process.stdout.write(namespaces.map((n) => `${n.name}\n`).join('')); return; }
      // ctr: tabwriter(minwidth 1, padding 1), every cell tab-terminated.
      const lines = [['NAME', 'LABELS'], ...namespaces.map((n) => [n.name, labelString(n.labels, '')])].map((r) => `${r.join('\t')}\t\n`);
      process.stdout.write(goTabwriter(lines.join(''), 1, 1));
    }));
  ns.command('label')
    .description('set and clear labels for a namespace')
    .argument('<name>')
    .argument('[labels...]', 'key=value to set, key= to clear')
    .action(action(async (ctx, [name, ...labels]) => {
      const { NamespacesDefinition } = await import('../../../api/gen/services/namespaces/v1/namespace.js');
      const set = parseLabelArgs(labels);
      await ctx.connection.service(NamespacesDefinition).update({
        namespace: { name, labels: set },
        updateMask: Object.keys(set).map((k) => `labels.${k}`),
      });
    }));
  ns.command('remove')
    .alias('rm')
    .description('remove one or more namespaces (they must be empty)')
    .argument('<names...>')
    .option('--cgroup, -c', 'also delete the namespace cgroup (ignored)')
    .action(action(async (ctx, names) => {
      const { NamespacesDefinition } = await import('../../../api/gen/services/namespaces/v1/namespace.js');
      const svc = ctx.connection.service(NamespacesDefinition);
      // As ctr: a namespace that does not exist counts as removed; other failures are logged
      // and the first one is the exit error.
      let firstErr: Error | undefined;
      for (const name of names) {
        try {
          await svc.delete({ name });
        } catch (err) {
          if (!isNotFound(err)) {
            firstErr ??= new Error(`unable to delete ${name}: ${(err as Error).message}`);
            logLine('error', `unable to delete ${name}`, (err as Error).message);
            continue;
          }
        }
        process.stdout.write(`${name}\n`);
      }
      if (firstErr) throw firstErr;
    }));
}
