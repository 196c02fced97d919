/** `berth version`: client and server versions (and the server's UUID), as ctr prints them. */
import type { Command } from 'commander';
import { action } from '../action.js';
import { REVISION, SERVER_VERSION } from '../../../core/version/version.js';

export function register(program: Command): void {
  program
    .command('version')
    .description('print the client and server versions')
    .action(action(async (ctx) => {
      const { VersionDefinition } = await import('../../../api/gen/services/version/v1/version.js');
      const { IntrospectionDefinition } = await import('../../../api/gen/services/introspection/v1/introspection.js');
      process.stdout.write(`Client:\n  Version:  ${SERVER_VERSION}\n  Revision: ${REVISION}\n  Node version: ${process.version}\n\n`);
      const conn = ctx.connection;
      const [v, s] = await Promise.all([
        conn.service(VersionDefinition).version({}),
        conn.service(IntrospectionDefinition).server({}),
      ]);
      process.stdout.write(`Server:\n  Version:  ${v.version}\n  Revision: ${v.revision}\n  UUID: ${s.uuid}\n`);
    }));
}
