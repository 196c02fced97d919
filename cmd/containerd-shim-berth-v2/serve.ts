/**
 * The long-lived shim: child subreaper, ttrpc server for `containerd.task.v2.Task` on the
 * inherited listener (fd 3) or -socket, event publisher to the daemon's TTRPC_ADDRESS. It exits
 * on Shutdown (once no container is left), on SIGTERM/SIGINT, after flushing queued events.
 */
import { readFileSync, rmSync } from 'node:fs';
import { TaskService } from '../../api/gen/runtime/v2/task/shim.js';
import { TtrpcServer, isAbstract, socketPath } from '../../api/ttrpc/index.js';
import { messageOf } from '../../core/errdefs/errdefs.js';
import { prctlSetChildSubreaper } from '../../core/sys/syscalls.js';
import { applyDeferredV8FlagsSoon } from '../../core/sys/v8flags.js';
import { BERTH_VERSION } from '../../core/version/version.js';
import { Publisher } from './events.js';
import type { ShimFlags } from './flags.js';
import type { Logger } from './log.js';
import { Reaper } from './reaper.js';
import { ShimService } from './service.js';

const LISTENER_FD = 3;
/** How long queued events may take to reach the daemon before the shim exits anyway. */
const EVENT_FLUSH_MS = 5_000;

export async function serve(flags: ShimFlags, log: Logger): Promise<void> {
  if (!flags.namespace) throw new Error('shim namespace cannot be empty');
  prctlSetChildSubreaper();

  const publisher = new Publisher({ address: daemonTtrpcAddress(process.env.TTRPC_ADDRESS), namespace: flags.namespace, log });
  const reaper = new Reaper({ onError: (err, pid) => log.error('reap exit status', { pid, error: messageOf(err) }) });
  const server = new TtrpcServer();
  let stopping: Promise<void> | undefined;

  const stop = (reason: string): Promise<void> => {
    stopping ??= (async () => {
      log.info('shim shutting down', { reason });
      await server.close({ graceMs: 1_000 }).catch(() => undefined);
      removeSocket(log);
      if (!(await publisher.flush(EVENT_FLUSH_MS))) log.error('publisher not closed: events were lost', { pending: publisher.pending });
      publisher.close();
      reaper.close();
      process.exit(0);
    })();
    return stopping;
  };

  const service = new ShimService({
    namespace: flags.namespace,
    publisher,
    reaper,
    log,
    version: BERTH_VERSION,
    onShutdown: () => void stop('shutdown requested'),
  });
  server.register(TaskService, service);
  server.on('error', (err) => log.error('ttrpc server failure', { error: err.message }));
  await server.listen(flags.socket ? `unix://${flags.socket}` : { fd: LISTENER_FD });
  // Only now: built-in modules loaded before a V8 flag changes keep their code cache.
  applyDeferredV8FlagsSoon();

  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => void stop(`caught ${signal}`));
  // A container must not lose its shim to a bug in one request path: log and keep serving.
  process.on('uncaughtException', (err) => log.error('uncaught exception', { error: err.stack ?? err.message }));
  process.on('unhandledRejection', (err) => log.error('unhandled rejection', { error: messageOf(err) }));
  log.info('shim serving', { namespace: flags.namespace, id: flags.id, pid: process.pid });
}

/**
 * TTRPC_ADDRESS is a socket path (containerd dials it as a file, with or without unix://);
 * in our ttrpc address convention a bare name would mean an abstract socket.
 */
export function daemonTtrpcAddress(env: string | undefined): string {
  if (!env) return '';
  return env.startsWith('unix://') ? env : `unix://${env}`;
}

/** The socket named in ./address (the bundle this shim started in) goes with the shim. */
function removeSocket(log: Logger): void {
  try {
    const address = readFileSync('address', 'utf8').trim();
    if (address && !isAbstract(address)) rmSync(socketPath(address), { force: true });
  } catch (err) {
    log.debug('no socket to remove', { error: messageOf(err) });
  }
}
