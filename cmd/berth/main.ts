/** berth: the ctr-style command line client. */
import { Command, CommanderError } from 'commander';
import { globalDefaults } from './context.js';
import { commands } from './commands/index.js';
import { messageOf } from '../../core/errdefs/errdefs.js';

// A reader that went away (`berth images ls | head -1`) ends the command quietly, as SIGPIPE
// ends ctr, instead of an unhandled EPIPE with a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

const defaults = globalDefaults();
const program = new Command('berth')
  .description('command line client for berthd (and any containerd 1.6 API daemon)')
  .option('-a, --address <path>', 'address for the daemon\'s gRPC server (env CONTAINERD_ADDRESS)', defaults.address)
  .option('-n, --namespace <name>', 'namespace to use (env CONTAINERD_NAMESPACE)', defaults.namespace)
  .option('--timeout <duration>', 'total timeout for commands (e.g. 10s)')
  .option('--connect-timeout <duration>', 'timeout for connecting to the daemon', '10s')
  .option('--debug', 'enable debug output in logs')
  .showHelpAfterError()
  .exitOverride();

for (const register of commands) register(program);

program.parseAsync(process.argv).catch((err) => {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') process.exit(0);
    process.exit(err.exitCode || 1);
  }
  process.stderr.write(`berth: ${messageOf(err)}\n`);
  process.exit(1);
});
