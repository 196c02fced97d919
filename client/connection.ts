/**
 * A connection to a containerd-API daemon (berthd or containerd) over its unix socket, with
 * promise-based typed calls built from the generated service definitions. Every call
 * carries the namespace (and lease, when set) headers, as containerd's Go client does.
 */
import * as grpc from '@grpc/grpc-js';
import { statSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { Code, fromStatus, RemoteError, DeadlineExceededError } from '../core/errdefs/errdefs.js';
import { LEASE_HEADER, NAMESPACE_HEADER } from '../core/namespaces/namespaces.js';

/** The daemon could not be reached at all (code UNAVAILABLE, message without a suffix). */
export class ConnectError extends RemoteError {
  constructor(message: string) {
    super(Code.UNAVAILABLE, message);
  }
}

export interface ConnectionOptions {
  address: string;
  namespace: string;
  /** Per-call deadline in ms (0 = none). */
  timeoutMs?: number;
  /** How long to wait for the socket to accept before failing the first call. */
  connectTimeoutMs?: number;
  /** Lease id sent with every call. */
  lease?: string;
}

export interface CallOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Overrides the connection's namespace for this call (proxies forward the caller's). */
  namespace?: string;
  /** Overrides the connection's lease for this call. */
  lease?: string;
}

/** A message codec as ts-proto generates it. */
export interface MessageCodec<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(input: Uint8Array): T;
  fromPartial(object: any): T;
}

/** One method of a ts-proto "generic definition" (outputServices=generic-definitions). */
export interface GenericMethod {
  readonly name: string;
  readonly requestType: MessageCodec<any>;
  readonly requestStream: boolean;
  readonly responseType: MessageCodec<any>;
  readonly responseStream: boolean;
}
export interface GenericService {
  readonly fullName: string;
  readonly methods: { readonly [name: string]: GenericMethod };
}

/** Requests may omit fields; the codec fills defaults (like Go's zero values). */
export type DeepPartial<T> = T extends Date | Uint8Array | Buffer
  ? T
  : T extends readonly (infer U)[]
    ? DeepPartial<U>[]
    : T extends object
      ? { [K in keyof T]?: DeepPartial<T[K]> }
      : T;
type Req<M extends GenericMethod> = DeepPartial<ReturnType<M['requestType']['decode']>>;
type Res<M extends GenericMethod> = ReturnType<M['responseType']['decode']>;
type Unary<M extends GenericMethod> = (req?: Req<M>, opts?: CallOptions) => Promise<Res<M>>;
type Stream<M extends GenericMethod> = (req?: Req<M>, opts?: CallOptions) => AsyncIterable<Res<M>>;
/** Bidirectional calls: write requests (partials are completed), read responses. */
export interface DuplexCall<M extends GenericMethod> {
  write(req: Req<M>): Promise<void>;
  end(): void;
  responses: AsyncIterable<Res<M>>;
  cancel(): void;
}
type Duplex<M extends GenericMethod> = (opts?: CallOptions) => Promise<DuplexCall<M>>;

/** Promise-style client for one service. */
export type ServiceClient<D extends GenericService> = {
  [K in keyof D['methods']]: D['methods'][K]['requestStream'] extends true
    ? Duplex<D['methods'][K]>
    : D['methods'][K]['responseStream'] extends true
      ? Stream<D['methods'][K]>
      : Unary<D['methods'][K]>;
};

/**
 * The details grpc-js gives a call that never reached the daemon or lost its connection. Only
 * these are connection failures: an UNAVAILABLE status the daemon itself sent (a proxy plugin
 * whose peer is down: "… is not available: connection refused") is the daemon's answer.
 */
const TRANSPORT_FAILURE = /^(?:[a-z_]+: )?No connection established|^Connection dropped$/;

/** Maps a grpc-js error to an errdefs class, so callers classify with isNotFound() & co. */
function mapError(err: grpc.ServiceError, address: string): Error {
  if (err.code === grpc.status.UNAVAILABLE && TRANSPORT_FAILURE.test(err.details ?? '')) {
    return new ConnectError(`cannot connect to ${address}: ${connectReason(err.details)}`);
  }
  if (err.code === grpc.status.DEADLINE_EXCEEDED) return new DeadlineExceededError(`${err.details || 'deadline exceeded'}`);
  return fromStatus(err.code, err.details ?? err.message);
}

function connectReason(details: string | undefined): string {
  if (!details) return 'connection failed';
  if (/ENOENT/.test(details)) return 'no such socket (is the daemon running?)';
  if (/ECONNREFUSED/.test(details)) return 'connection refused (is the daemon running?)';
  if (/EACCES/.test(details)) return 'permission denied';
  return details.split('\n')[0]!;
}

export class Connection {
  private readonly client: grpc.Client;
  private ready: Promise<void> | undefined;
  readonly namespace: string;
  lease: string | undefined;

  constructor(readonly options: ConnectionOptions) {
    const target = options.address.startsWith('unix:') ? options.address : `unix://${resolvePath(options.address)}`;
    this.client = new grpc.Client(target, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 16 << 20,
      'grpc.max_send_message_length': 16 << 20,
      // Reconnect quickly when a daemon or proxy peer comes back (containerd caps backoff at 3 s).
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 3000,
    });
    this.namespace = options.namespace;
    this.lease = options.lease;
  }

  /** Waits (once) for the socket to accept, with a clear error when nothing is listening. */
  private waitReady(): Promise<void> {
    this.ready ??= new Promise((resolve, reject) => {
      // A missing socket file cannot start accepting within the timeout worth waiting for.
      const path = this.options.address.replace(/^unix:\/\//, '');
      try {
        if (!statSync(path).isSocket()) return reject(new ConnectError(`cannot connect to ${this.options.address}: not a socket`));
      } catch {
        return reject(new ConnectError(`cannot connect to ${this.options.address}: no such socket (is the daemon running?)`));
      }
      const deadline = Date.now() + (this.options.connectTimeoutMs || 10_000);
      this.client.waitForReady(deadline, (err) => {
        if (!err) return resolve();
        reject(new ConnectError(`cannot connect to ${this.options.address}: ${connectReason(err.message)}`));
      });
    });
    // A failed wait is not remembered: the next call tries again (the daemon may be back).
    this.ready.catch(() => { this.ready = undefined; });
    return this.ready;
  }

  private metadata(opts?: CallOptions): grpc.Metadata {
    const md = new grpc.Metadata();
    const ns = opts?.namespace ?? this.namespace;
    if (ns) md.set(NAMESPACE_HEADER, ns);
    const lease = opts?.lease ?? this.lease;
    if (lease) md.set(LEASE_HEADER, lease);
    return md;
  }

  private callOptions(opts?: CallOptions): grpc.CallOptions {
    const t = opts?.timeoutMs ?? this.options.timeoutMs;
    return t ? { deadline: Date.now() + t } : {};
  }

  /** A typed client for a generated service ("…Definition" export). */
  service<D extends GenericService>(def: D): ServiceClient<D> {
    const out: Record<string, unknown> = {};
    for (const [name, m] of Object.entries(def.methods)) {
      const path = `/${def.fullName}/${m.name}`;
      const serialize = (v: unknown) => Buffer.from(m.requestType.encode(m.requestType.fromPartial(v ?? {})).finish());
      const deserialize = (b: Buffer) => m.responseType.decode(b);
      if (m.requestStream) {
        out[name] = async (opts?: CallOptions) => {
          await this.waitReady();
          const call = this.client.makeBidiStreamRequest(path, serialize, deserialize, this.metadata(opts), this.callOptions(opts));
          const detach = cancelOn(opts?.signal, () => call.cancel());
          call.once('close', detach);
          const conn = this;
          return {
            write: (req: unknown) =>
              new Promise<void>((resolve, reject) => {
                const ok = call.write(req, (err?: Error | null) => (err ? reject(err) : undefined));
                if (ok) resolve();
                else call.once('drain', () => resolve());
              }),
            end: () => call.end(),
            cancel: () => call.cancel(),
            responses: (async function* () {
              try {
                for await (const r of call) yield r;
              } catch (err) {
                throw conn.mapError(err);
              }
            })(),
          };
        };
      } else if (m.responseStream) {
        out[name] = (req: unknown, opts?: CallOptions) => this.streamCall(path, serialize, deserialize, req, opts);
      } else {
        out[name] = async (req: unknown, opts?: CallOptions) => {
          await this.waitReady();
          return new Promise((resolve, reject) => {
            const call = this.client.makeUnaryRequest(path, serialize, deserialize, req, this.metadata(opts), this.callOptions(opts), (err, res) => {
              detach();
              if (err) reject(mapError(err, this.options.address));
              else resolve(res);
            });
            const detach = cancelOn(opts?.signal, () => call.cancel());
          });
        };
      }
    }
    return out as ServiceClient<D>;
  }

  private async *streamCall(
    path: string,
    serialize: (v: unknown) => Buffer,
    deserialize: (b: Buffer) => unknown,
    req: unknown,
    opts?: CallOptions,
  ): AsyncIterable<unknown> {
    await this.waitReady();
    const call = this.client.makeServerStreamRequest(path, serialize, deserialize, req, this.metadata(opts), this.callOptions(opts));
    const detach = cancelOn(opts?.signal, () => call.cancel());
    try {
      for await (const item of call) yield item;
    } catch (err) {
      if ((err as grpc.ServiceError).code === grpc.status.CANCELLED && opts?.signal?.aborted) return;
      throw mapError(err as grpc.ServiceError, this.options.address);
    } finally {
      detach();
      call.cancel();
    }
  }

  /** Maps a stream error the same way unary calls do. */
  mapError(err: unknown): Error {
    return (err as grpc.ServiceError)?.code !== undefined ? mapError(err as grpc.ServiceError, this.options.address) : (err as Error);
  }

  close(): void {
    this.client.close();
  }
}


/** Cancels a call when `signal` aborts; returns the function that stops listening (no leaks on long-lived signals). */
function cancelOn(signal: AbortSignal | undefined, cancel: () => void): () => void {
  if (!signal) return () => undefined;
  signal.addEventListener('abort', cancel, { once: true });
  return () => signal.removeEventListener('abort', cancel);
}
