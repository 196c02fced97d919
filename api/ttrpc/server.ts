/** ttrpc server: serves ts-proto service definitions over unix sockets or an inherited listener fd. */
import { EventEmitter } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import type { Request, Response } from '../gen/ttrpc/ttrpc.js';
import { messageOf } from '../../core/errdefs/errdefs.js';
import { socketPath } from './address.js';
import { fromKeyValues, NAMESPACE_METADATA_KEY, type Metadata } from './metadata.js';
import { ServerConnection } from './server-connection.js';
import { unaryMethods, type MethodDefinition, type RequestOf, type ResponseOf, type UnaryKeys } from './service.js';
import { Code, errorResponse, okStatus, statusFromError } from './status.js';

export interface HandlerContext {
  /** Request metadata; keys as the client sent them (containerd clients lower-case them). */
  metadata: Metadata;
  /** The containerd namespace from the `containerd-namespace-ttrpc` metadata, if sent. */
  namespace?: string;
  /** Aborted when the client's timeout expires, the connection drops, or the server is force-closed. */
  signal: AbortSignal;
}

export type UnaryHandler<Req, Res> = (request: Req, ctx: HandlerContext) => Promise<Res>;

/** Handlers keyed like the definition's unary methods (camelCase), typed by its messages. */
export type ServiceImplementation<Def> = {
  [K in UnaryKeys<Def>]: UnaryHandler<RequestOf<Def[K]>, ResponseOf<Def[K]>>;
};

export type ListenAddress = string | { fd: number };

export interface TtrpcServerEvents {
  /** A client connected; carries the number of open connections. */
  connection: [count: number];
  /** A client went away; a count of 0 means no client is left (what a shim waits for). */
  disconnect: [count: number];
  /** A listener failed after it started; only emitted when someone listens for it. */
  error: [err: Error];
}

export interface CloseOptions {
  /** How long in-flight requests may take to finish before their connections are cut. */
  graceMs?: number;
}

interface RegisteredMethod {
  definition: MethodDefinition;
  handler: UnaryHandler<unknown, unknown>;
}

const DEFAULT_GRACE_MS = 10_000;

export class TtrpcServer extends EventEmitter<TtrpcServerEvents> {
  /** service name → method name → handler. */
  private readonly services = new Map<string, Map<string, RegisteredMethod>>();
  private readonly acceptors = new Set<Server>();
  private readonly open = new Set<ServerConnection>();
  private closing = false;

  /** Registers every unary method of `def`; a service name may only be registered once. */
  register<Def extends object>(def: Def, impl: ServiceImplementation<Def>): void {
    const handlers = impl as unknown as Record<string, UnaryHandler<unknown, unknown> | undefined>;
    const added = new Map<string, Map<string, RegisteredMethod>>();
    for (const { key, definition, service, method } of unaryMethods(def)) {
      if (this.services.has(service)) throw new Error(`ttrpc: duplicate service ${service} registered`);
      const handler = handlers[key];
      // A missing handler answers like an unknown method rather than failing registration.
      if (typeof handler !== 'function') continue;
      let methods = added.get(service);
      if (!methods) added.set(service, (methods = new Map()));
      methods.set(method, { definition, handler: handler.bind(impl) });
    }
    for (const [service, methods] of added) this.services.set(service, methods);
  }

  /** Starts accepting on a socket address (see address.ts) or an already-listening inherited fd. */
  async listen(address: ListenAddress): Promise<void> {
    if (this.closing) throw new Error('ttrpc: server closed');
    const listener = createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      const target = typeof address === 'string' ? { path: socketPath(address) } : { fd: address.fd };
      listener.listen(target, () => {
        listener.off('error', reject);
        resolve();
      });
    });
    listener.on('error', (err) => {
      if (this.listenerCount('error') > 0) this.emit('error', err);
    });
    this.acceptors.add(listener);
  }

  /** Number of open client connections. */
  get connections(): number {
    return this.open.size;
  }

  /**
   * Stops accepting, lets in-flight requests finish (up to graceMs), then closes every
   * connection; idle connections are closed at once.
   */
  async close({ graceMs = DEFAULT_GRACE_MS }: CloseOptions = {}): Promise<void> {
    this.closing = true;
    const listenersClosed = [...this.acceptors].map((listener) => new Promise<void>((resolve) => listener.close(() => resolve())));
    this.acceptors.clear();
    const connections = [...this.open];
    for (const connection of connections) connection.shutdownWhenIdle();
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
    await Promise.race([Promise.all(connections.map((c) => c.closed)), graceOver]);
    clearTimeout(timer);
    for (const connection of connections) connection.destroy();
    await Promise.all([...connections.map((c) => c.closed), ...listenersClosed]);
  }

  private accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const connection = new ServerConnection(socket, (request, signal) => this.dispatch(request, signal));
    this.open.add(connection);
    this.emit('connection', this.open.size);
    void connection.closed.then(() => {
      this.open.delete(connection);
      this.emit('disconnect', this.open.size);
    });
  }

  private async dispatch(request: Request, signal: AbortSignal): Promise<Response> {
    const methods = this.services.get(request.service);
    if (!methods) return errorResponse(Code.UNIMPLEMENTED, `service ${request.service}`);
    const target = methods.get(request.method);
    if (!target) return errorResponse(Code.UNIMPLEMENTED, `method ${request.method}`);

    let decoded: unknown;
    try {
      decoded = target.definition.requestDeserialize(request.payload);
    } catch (err) {
      return errorResponse(Code.INTERNAL, `ttrpc: error unmarshalling payload: ${messageOf(err)}`);
    }
    const metadata = fromKeyValues(request.metadata);
    const ctx: HandlerContext = { metadata, signal };
    const namespace = metadata[NAMESPACE_METADATA_KEY]?.[0];
    if (namespace !== undefined) ctx.namespace = namespace;

    let result: unknown;
    try {
      result = await target.handler(decoded, ctx);
    } catch (err) {
      return { status: statusFromError(err), payload: Buffer.alloc(0) };
    }
    if (result === undefined || result === null) return errorResponse(Code.UNKNOWN, 'ttrpc: marshal called with nil');
    try {
      return { status: okStatus(), payload: target.definition.responseSerialize(result) };
    } catch (err) {
      return errorResponse(Code.INTERNAL, `ttrpc: error marshaling payload: ${messageOf(err)}`);
    }
  }
}
