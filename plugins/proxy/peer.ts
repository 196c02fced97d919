/**
 * The gRPC connection of a proxy plugin to its peer process, with the failure handling a
 * daemon needs from something it does not control:
 *
 * - dialled lazily, so berthd boots while the peer is still starting (or is down);
 * - a peer that is not there fails fast — a probe of the unix socket before (re)dialling
 *   turns "no socket" and "nobody listening" into an immediate UNAVAILABLE that names the
 *   proxy, instead of a connect timeout;
 * - once a call fails because the connection went away, the connection is dropped and the
 *   next call dials afresh (gRPC's own reconnect backoff then never exceeds 3 s);
 * - every call carries the caller's namespace (and nothing else: a lease of this daemon means
 *   nothing to the peer).
 */
import { ConnectError, Connection, type CallOptions, type GenericService, type ServiceClient } from '../../client/connection.js';
import { Code, codeOf, messageOf, UnavailableError } from '../../core/errdefs/errdefs.js';
import type { RequestContext } from '../../core/namespaces/namespaces.js';
import { socketIsLive } from '../../core/server/socket.js';

/** How long a (re)dial may wait for the peer's socket to accept gRPC. */
export const PEER_CONNECT_TIMEOUT_MS = 5000;

/** Errors that mean "the connection is gone", as opposed to the peer answering UNAVAILABLE. */
function isConnectionFailure(err: unknown): boolean {
  if (err instanceof ConnectError) return true;
  if (codeOf(err) !== Code.UNAVAILABLE) return false;
  return /ECONNRESET|EPIPE|ECONNREFUSED|ENOENT|socket|connection|closed|GOAWAY/i.test(messageOf(err));
}

export class Peer {
  private conn: Connection | undefined;
  /** Whether the current connection has answered at least once since it was dialled. */
  private proven = false;
  private readonly apis = new Map<GenericService, unknown>();
  private closed = false;

  /**
   * @param label how errors name the proxy, e.g. `proxy snapshotter "customsnap"`
   * @param address the peer's unix socket path
   */
  constructor(readonly label: string, readonly address: string, private readonly connectTimeoutMs = PEER_CONNECT_TIMEOUT_MS) {}

  /** Call options for a request made on behalf of `ctx`. */
  options(ctx: RequestContext): CallOptions {
    return { namespace: ctx.namespace ?? '', signal: ctx.signal };
  }

  /** An UNAVAILABLE error naming the proxy and its address. */
  unavailable(reason: string): Error {
    const why = reason
      .replace(/^cannot connect to \S+: /, '')
      .replace(/ \(is the daemon running\?\)/, '')
      .replace(/: unavailable$/, '');
    return new UnavailableError(`${this.label} at ${this.address} is not available: ${why}`);
  }

  private async connection(): Promise<Connection> {
    if (this.closed) throw this.unavailable('the proxy plugin is closed');
    if (this.conn && this.proven) return this.conn;
    // Not known to work: make sure someone is listening before paying for a gRPC dial.
    if (!(await socketIsLive(this.address, 1000))) {
      this.drop();
      throw this.unavailable('nothing is listening on the socket');
    }
    this.conn ??= new Connection({ address: this.address, namespace: '', connectTimeoutMs: this.connectTimeoutMs });
    return this.conn;
  }

  private drop(): void {
    this.conn?.close();
    this.conn = undefined;
    this.proven = false;
    this.apis.clear();
  }

  private api<D extends GenericService>(conn: Connection, def: D): ServiceClient<D> {
    let api = this.apis.get(def) as ServiceClient<D> | undefined;
    if (!api) {
      api = conn.service(def);
      this.apis.set(def, api);
    }
    return api;
  }

  /** Maps a failure: connection-level ones drop the connection and name the proxy. */
  fail(err: unknown): Error {
    if (isConnectionFailure(err)) {
      this.drop();
      return this.unavailable(messageOf(err));
    }
    return err instanceof Error ? err : new Error(String(err));
  }

  /** Runs a unary (or stream-opening) call against the service `def`. */
  async call<D extends GenericService, T>(def: D, fn: (api: ServiceClient<D>) => Promise<T>): Promise<T> {
    const conn = await this.connection();
    try {
      const res = await fn(this.api(conn, def));
      if (this.conn === conn) this.proven = true;
      return res;
    } catch (err) {
      if (!isConnectionFailure(err) && this.conn === conn) this.proven = true;
      throw this.fail(err);
    }
  }

  /** Iterates a server-streaming call, mapping failures that happen mid-stream too. */
  async *stream<D extends GenericService, T>(def: D, fn: (api: ServiceClient<D>) => AsyncIterable<T>): AsyncGenerator<T> {
    const conn = await this.connection();
    try {
      for await (const item of fn(this.api(conn, def))) {
        if (this.conn === conn) this.proven = true;
        yield item;
      }
      if (this.conn === conn) this.proven = true;
    } catch (err) {
      throw this.fail(err);
    }
  }

  close(): void {
    this.closed = true;
    this.drop();
  }
}
