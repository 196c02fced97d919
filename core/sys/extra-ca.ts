/**
 * NODE_EXTRA_CA_CERTS, loaded when a TLS connection first needs it instead of at start-up.
 *
 * Node reads and parses that file before any JavaScript runs. With a system bundle (~150
 * certificates) that was 40 ms of every berth process here, more than Node's own start
 * (`node -e 0`: 64 ms with it, 25 ms without), though only registry pulls make TLS
 * connections. berth's launchers (bin/*.js) start Node through
 * `#!/usr/bin/env -S BERTH_DEFERRED_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS} NODE_EXTRA_CA_CERTS= node`,
 * so Node finds the variable empty; takeDeferredExtraCa() (run by the launcher first thing)
 * puts the value back in the environment for child processes, and the registry client
 * (client/remotes/trust.ts) adds the file's certificates to what it trusts. This module stays
 * free of node:tls, which the launcher must not load.
 * Started as `node bin/<program>.js`, Node has loaded the file itself and nothing changes.
 */

export const DEFERRED_EXTRA_CA_ENV = 'BERTH_DEFERRED_EXTRA_CA_CERTS';

// On `process`, under a registered symbol: the launcher and the program are separate bundles.
const DEFERRED = Symbol.for('berth.deferredExtraCaCerts');
type WithDeferred = NodeJS.Process & { [DEFERRED]?: string };

/**
 * Called by the launcher before the program runs: remembers the deferred file (if the
 * launcher's shebang deferred one) and restores NODE_EXTRA_CA_CERTS for child processes.
 */
export function takeDeferredExtraCa(env: NodeJS.ProcessEnv = process.env): void {
  const path = env[DEFERRED_EXTRA_CA_ENV];
  if (path === undefined) return;
  delete env[DEFERRED_EXTRA_CA_ENV];
  if (!path) {
    delete env.NODE_EXTRA_CA_CERTS;
    return;
  }
  env.NODE_EXTRA_CA_CERTS = path;
  (process as WithDeferred)[DEFERRED] = path;
}

/** The NODE_EXTRA_CA_CERTS file Node did not load at start-up because the launcher deferred it. */
export function deferredExtraCaFile(): string | undefined {
  return (process as WithDeferred)[DEFERRED];
}
