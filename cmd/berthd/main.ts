/** berthd: the daemon entry point (flags → config → boot → serve → signal → stop). */
import { parseDaemonArgs, runDaemonCommand } from '../../core/server/command.js';
import { limitMallocArenas } from '../../core/sys/malloc.js';
import { takeSigusr1 } from '../../core/sys/sigusr1.js';
import { builtins } from '../../plugins/builtins.js';
import { proxyRegistrations } from '../../plugins/proxy/registrations.js';

/** malloc arenas of the daemon: the main one and one that every other thread shares. */
const MALLOC_ARENAS = 2;

// First thing: until a listener exists, SIGUSR1 would open Node's inspector (sigusr1.ts).
takeSigusr1();

let args;
try {
  args = parseDaemonArgs(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`berthd: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
// The daemon itself (not its one-shot commands): before anything starts libuv's pool threads.
if (args.command.length === 0 && !args.help && !args.version) limitMallocArenas(MALLOC_ARENAS);

runDaemonCommand(args, builtins, (cfg) => proxyRegistrations(cfg.proxy_plugins, builtins)).then(
  (code) => { if (code !== undefined) process.exitCode = code; },
  (err) => {
    process.stderr.write(`berthd: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
