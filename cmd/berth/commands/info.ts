/** `berth info`: one screen about the daemon: version, uuid, plugins by status, namespaces. */
import type { Command } from 'commander';
import { action } from '../action.js';
import { statusOf } from './plugins.js';

export function register(program: Command): void {
  program
    .command('info')
    .description('print information about the daemon')
    .action(action(async (ctx) => {
      const { VersionDefinition } = await import('../../../api/gen/services/version/v1/version.js');
      const { IntrospectionDefinition } = await import('../../../api/gen/services/introspection/v1/introspection.js');
      const { NamespacesDefinition } = await import('../../../api/gen/services/namespaces/v1/namespace.js');
      const c = ctx.connection;
      const [v, s, p, n] = await Promise.all([
        c.service(VersionDefinition).version({}),
        c.service(IntrospectionDefinition).server({}),
        c.service(IntrospectionDefinition).plugins({ filters: [] }),
        c.service(NamespacesDefinition).list({}),
      ]);
      const counts = { ok: 0, skip: 0, error: 0 };
      for (const pl of p.plugins) counts[statusOf(pl)]++;
      process.stdout.write(JSON.stringify({
        address: ctx.globals.address,
        server: { version: v.version, revision: v.revision, uuid: s.uuid },
        plugins: { total: p.plugins.length, ...counts },
        namespaces: n.namespaces.map((x) => x.name),
      }, null, 2) + '\n');
    }));
}
