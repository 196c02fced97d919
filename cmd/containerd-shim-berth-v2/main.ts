/**
 * containerd-shim-berth-v2: the runtime v2 shim of berth (runtime name io.containerd.berth.v2).
 *
 *   <shim> -namespace NS -address A -publish-binary B -id ID [-debug] start    → prints the address
 *   <shim> -namespace NS -address A -publish-binary B -id ID -bundle B delete → DeleteResponse
 *   <shim> -namespace NS -id ID -address A [-debug]                           → serves on fd 3
 *
 * Each mode loads only its own modules, so the short-lived actions start fast and the resident
 * shim does not carry what only `start` needs.
 */
import { writeSync } from 'node:fs';
import { takeSigusr1 } from '../../core/sys/sigusr1.js';
import { BERTH_VERSION, REVISION } from '../../core/version/version.js';
import { parseFlags, UsageError } from './flags.js';
import { createLogger } from './log.js';

const NAME = 'containerd-shim-berth-v2';

// The shim runs as root: SIGUSR1 must not open Node's inspector (sigusr1.ts).
takeSigusr1();

async function main(): Promise<number | undefined> {
  const flags = parseFlags(process.argv.slice(2));
  if (flags.version) {
    process.stdout.write(`${NAME}:\n  Version:  ${BERTH_VERSION}\n  Revision: ${REVISION}\n  Node:     ${process.version}\n`);
    return 0;
  }
  if (!flags.namespace) throw new UsageError('shim namespace cannot be empty');
  const log = createLogger({ debug: flags.debug, fields: { runtime: 'io.containerd.berth.v2', namespace: flags.namespace, id: flags.id || undefined } });
  switch (flags.action) {
    case 'start': {
      const { startAction } = await import('./start.js');
      const address = await startAction(flags);
      process.stdout.write(address);
      return 0;
    }
    case 'delete': {
      const { deleteAction } = await import('./delete.js');
      const response = await deleteAction(flags, log);
      writeSync(1, response);
      return 0;
    }
    case '': {
      const { serve } = await import('./serve.js');
      await serve(flags, log);
      return undefined; // keeps running
    }
    default:
      throw new UsageError(`unknown action ${JSON.stringify(flags.action)}`);
  }
}

main().then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`${NAME}: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
