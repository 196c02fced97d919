/**
 * What every CLI command receives: the resolved global options and a lazily opened
 * connection, so commands that fail validation never dial the daemon.
 */
import type { Command } from 'commander';
import { Connection } from '../../client/connection.js';
import { parseDuration } from '../../core/config/duration.js';
import { DEFAULT_ADDRESS } from '../../core/config/config.js';
import { DEFAULT_NAMESPACE } from '../../core/namespaces/namespaces.js';

export interface GlobalOptions {
  address: string;
  namespace: string;
  timeout?: string;
  connectTimeout?: string;
  debug?: boolean;
}

export class CliContext {
  private conn: Connection | undefined;
  constructor(readonly globals: GlobalOptions) {}

  get connection(): Connection {
    this.conn ??= new Connection({
      address: this.globals.address,
      namespace: this.globals.namespace,
      timeoutMs: this.globals.timeout ? parseDuration(this.globals.timeout, '--timeout') : 0,
      connectTimeoutMs: this.globals.connectTimeout ? parseDuration(this.globals.connectTimeout, '--connect-timeout') : 10_000,
    });
    return this.conn;
  }

  close(): void {
    this.conn?.close();
  }
}

/** The context of the command being run (global options merged from every level). */
export function contextOf(cmd: Command): CliContext {
  const o = cmd.optsWithGlobals() as GlobalOptions;
  return new CliContext(o);
}

/** Environment and built-in defaults for the global options, as ctr reads them. */
export const globalDefaults = () => ({
  address: process.env.CONTAINERD_ADDRESS || DEFAULT_ADDRESS,
  namespace: process.env.CONTAINERD_NAMESPACE || DEFAULT_NAMESPACE,
});
