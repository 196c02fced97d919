/**
 * The one place where gRPC calls become service calls: decodes requests with the generated
 * codecs, reads the namespace and lease headers into a RequestContext, runs the async handler,
 * encodes its responses and maps thrown errdefs classes to gRPC statuses. Methods a service
 * does not implement answer UNIMPLEMENTED. The wire side of a call is grpc-call.ts.
 */
import { Code, codeOf, messageOf, NotImplementedError } from '../errdefs/errdefs.js';
import { LEASE_HEADER, NAMESPACE_HEADER, type RequestContext } from '../namespaces/namespaces.js';
import type { Logger } from '../log/logger.js';
import { CallError, type CallHeaders, type CallStatus, type ServerCall } from './grpc-call.js';
import { monotonicMs } from '../sys/monotonic.js';

/** One method entry of a ts-proto grpc-js service definition. */
export interface MethodDef {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  readonly requestDeserialize: (b: Buffer) => any;
  readonly responseSerialize: (v: any) => Buffer;
  readonly requestSerialize: (v: any) => Buffer;
  readonly responseDeserialize: (b: Buffer) => any;
}
export type ServiceDef = { readonly [method: string]: MethodDef };

export type RequestOf<M extends MethodDef> = ReturnType<M['requestDeserialize']>;
export type ResponseOf<M extends MethodDef> = ReturnType<M['responseDeserialize']>;

/** Context of a served call. */
export interface CallContext extends RequestContext {
  signal: AbortSignal;
  /** The request's HTTP/2 headers (gRPC metadata), names in lower case. */
  headers: CallHeaders;
}

/** A bidirectional call as its handler sees it: decoded requests in, responses out. */
export interface DuplexCall<Req = any, Res = any> {
  readonly requests: AsyncIterableIterator<Req>;
  /** Sends one response; resolves when the connection can take more. */
  send(res: Res): Promise<void>;
}

export type UnaryHandler<M extends MethodDef> = (req: RequestOf<M>, ctx: CallContext) => Promise<ResponseOf<M>>;
export type StreamHandler<M extends MethodDef> = (
  req: RequestOf<M>,
  ctx: CallContext,
  send: (res: ResponseOf<M>) => Promise<void>,
) => Promise<void>;
/** Bidirectional and client-streaming methods (content Write). */
export type DuplexHandler = (call: DuplexCall, ctx: CallContext) => Promise<void>;

export type Handlers<D extends ServiceDef> = {
  [K in keyof D]?: D[K]['requestStream'] extends true
    ? DuplexHandler
    : D[K]['responseStream'] extends true
      ? StreamHandler<D[K]>
      : UnaryHandler<D[K]>;
};

/** Serves one call of a method. */
export type ServeFn = (call: ServerCall) => void;

/** A service ready to add to the gRPC server. */
export interface GrpcServiceBinding {
  definition: ServiceDef;
  /** Its methods by full path (`/package.Service/Method`). */
  methods: ReadonlyMap<string, ServeFn>;
}

/** A served call's context and the hook the adapter calls once the handler has settled. */
interface ServedContext {
  ctx: CallContext;
  settled(): void;
}

/**
 * The context of a served call. Its abort signal is made only when a handler asks for it:
 * an AbortController, its listener and (on abort) a DOMException per call are measurable on
 * short unary calls; a signal is aborted only while its handler is still running.
 */
function contextOf(call: ServerCall): ServedContext {
  let ac: AbortController | undefined;
  let running = true;
  const ctx: CallContext = {
    namespace: call.headers[NAMESPACE_HEADER],
    lease: call.headers[LEASE_HEADER],
    headers: call.headers,
    get signal(): AbortSignal {
      if (!ac) {
        const c = new AbortController();
        ac = c;
        if (running) call.onCancel(() => { if (running) c.abort(); });
      }
      return ac.signal;
    },
  };
  return { ctx, settled: () => { running = false; } };
}

/**
 * Longest status message sent. The message travels in an HTTP/2 trailer, and a client whose
 * header-list limit it exceeds (grpc-js: under 1 MiB) drops the whole connection, failing every
 * other call on it; messages that echo a huge client-supplied name or key are cut in the middle
 * (the end keeps the errdefs suffix clients classify by).
 */
export const MAX_STATUS_MESSAGE = 16 * 1024;

export function boundedStatusMessage(message: string): string {
  if (message.length <= MAX_STATUS_MESSAGE) return message;
  const tail = 256;
  const head = MAX_STATUS_MESSAGE - tail;
  return `${message.slice(0, head)}…[${message.length - head - tail} characters cut]…${message.slice(-tail)}`;
}

/** The status a thrown value ends its call with. */
export function statusOf(err: unknown): CallStatus {
  if (err instanceof CallError) return { code: err.code, message: boundedStatusMessage(err.message) };
  const code = codeOf(err);
  return { code: code === Code.OK ? Code.UNKNOWN : code, message: boundedStatusMessage(messageOf(err)) };
}

const OK: CallStatus = { code: Code.OK, message: '' };

/** `fn` with whatever it throws turned into an INTERNAL status whose message starts with `what`. */
function internalOnThrow<A, R>(what: string, fn: (a: A) => R): (a: A) => R {
  return (a) => {
    try {
      return fn(a);
    } catch (err) {
      throw new CallError(Code.INTERNAL, `${what}: ${messageOf(err)}`);
    }
  };
}

/** Decoded view of a call's request stream. */
function decodedRequests(call: ServerCall, decode: (b: Buffer) => unknown): AsyncIterableIterator<unknown> {
  const raw = call.messages();
  const it: AsyncIterableIterator<unknown> = {
    next: async () => {
      const r = await raw.next();
      return r.done ? r : { value: decode(r.value), done: false };
    },
    [Symbol.asyncIterator]: () => it,
  };
  return it;
}

/**
 * Binds async handlers to the methods of `def`. `log` gets one debug line per call with its
 * method, namespace and duration.
 */
export function implement<D extends ServiceDef>(def: D, handlers: Handlers<D>, log?: Logger): GrpcServiceBinding {
  const methods = new Map<string, ServeFn>();
  for (const [name, method] of Object.entries(def)) {
    const handler = (handlers as Record<string, unknown>)[name] as ((...args: any[]) => Promise<any>) | undefined;
    const decode = internalOnThrow('Error deserializing request', (b: Buffer) => method.requestDeserialize(b));
    const encode = internalOnThrow('Error serializing response', (res: unknown) => method.responseSerialize(res));
    const run: (call: ServerCall, ctx: CallContext) => Promise<void> = !handler
      ? async () => { throw new NotImplementedError(method.path); }
      : method.requestStream
        ? (call, ctx) => handler({ requests: decodedRequests(call, decode), send: (res: unknown) => call.send(encode(res)) } satisfies DuplexCall, ctx)
        : method.responseStream
          ? async (call, ctx) => {
            const req = decode(await call.single());
            await handler(req, ctx, (res: unknown) => call.send(encode(res)));
          }
          : async (call, ctx) => {
            const req = decode(await call.single());
            const res = await handler(req, ctx);
            await call.send(encode(res));
          };
    methods.set(method.path, (call) => {
      const { ctx, settled } = contextOf(call);
      // Timed only for the debug line that reports it.
      const started = log?.debugEnabled ? monotonicMs() : 0;
      run(call, ctx).then(
        () => {
          settled();
          if (log?.debugEnabled) log.debug('request', { method: method.path, namespace: ctx.namespace, ms: +(monotonicMs() - started).toFixed(2) });
          call.finish(OK);
        },
        (err: unknown) => {
          settled();
          const status = statusOf(err);
          if (log?.debugEnabled) log.debug('request', { method: method.path, namespace: ctx.namespace, ms: +(monotonicMs() - started).toFixed(2), error: status.message });
          call.finish(status);
        },
      );
    });
  }
  return { definition: def, methods };
}

/** A plugin instance that serves gRPC services (io.containerd.grpc.v1 plugins). */
export interface GrpcPlugin {
  grpcServices(): GrpcServiceBinding[];
}

export const isGrpcPlugin = (x: unknown): x is GrpcPlugin =>
  !!x && typeof (x as GrpcPlugin).grpcServices === 'function';
