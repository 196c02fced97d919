/** berthd: the daemon entry point (flags → config → boot → serve → signal → stop). */
import { parseDaemonArgs, runDaemonCommand } from '../../core/server/command.js';
import { builtins } from '../../plugins/builtins.js';
import { proxyRegistrations } from '../../plugins/proxy/registrations.js';

runDaemonCommand(parseDaemonArgs(process.argv.slice(2)), builtins, (cfg) => proxyRegistrations(cfg.proxy_plugins, builtins)).then(
  (code) => { if (code !== undefined) process.exitCode = code; },
  (err) => {
    process.stderr.write(`berthd: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
