/**
 * The one place where gRPC calls become service calls: reads the namespace and lease
 * headers into a RequestContext, runs the async handler, and maps thrown errdefs classes to
 * gRPC statuses. Methods a service does not implement answer UNIMPLEMENTED.
 */
import type * as grpc from '@grpc/grpc-js';
import { Code, codeOf, messageOf, NotImplementedError } from '../errdefs/errdefs.js';
import { LEASE_HEADER, NAMESPACE_HEADER, type RequestContext } from '../namespaces/namespaces.js';
import type { Logger } from '../log/logger.js';

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
  metadata: grpc.Metadata;
}

export type UnaryHandler<M extends MethodDef> = (req: RequestOf<M>, ctx: CallContext) => Promise<ResponseOf<M>>;
export type StreamHandler<M extends MethodDef> = (
  req: RequestOf<M>,
  ctx: CallContext,
  send: (res: ResponseOf<M>) => Promise<void>,
) => Promise<void>;
/** Bidirectional and client-streaming methods get the raw call (content Write). */
export type DuplexHandler = (call: grpc.ServerDuplexStream<any, any>, ctx: CallContext) => Promise<void>;

export type Handlers<D extends ServiceDef> = {
  [K in keyof D]?: D[K]['requestStream'] extends true
    ? DuplexHandler
    : D[K]['responseStream'] extends true
      ? StreamHandler<D[K]>
      : UnaryHandler<D[K]>;
};

/** A service ready to add to the gRPC server. */
export interface GrpcServiceBinding {
  definition: ServiceDef;
  implementation: grpc.UntypedServiceImplementation;
}

function first(md: grpc.Metadata, key: string): string | undefined {
  const v = md.get(key)[0];
  return v === undefined ? undefined : String(v);
}

/** The parts of any served call the context needs. */
interface SurfaceCall {
  readonly metadata: grpc.Metadata;
  readonly cancelled: boolean;
  once(event: 'cancelled', listener: () => void): unknown;
}

/** A served call's context and the hook the adapter calls once the handler has settled. */
interface ServedContext {
  ctx: CallContext;
  settled(): void;
}

/**
 * The context of a served call. Its abort signal is made only when a handler asks for it:
 * an AbortController, its listener and (on abort) a DOMException per call are measurable on
 * short unary calls, and grpc-js reports every stream close as 'cancelled', including the
 * normal end of a call, so a signal is aborted only while its handler is still running.
 */
function contextOf(call: SurfaceCall): ServedContext {
  let ac: AbortController | undefined;
  let running = true;
  const ctx: CallContext = {
    namespace: first(call.metadata, NAMESPACE_HEADER),
    lease: first(call.metadata, LEASE_HEADER),
    metadata: call.metadata,
    get signal(): AbortSignal {
      if (!ac) {
        const c = new AbortController();
        ac = c;
        if (running) {
          if (call.cancelled) c.abort();
          else call.once('cancelled', () => { if (running) c.abort(); });
        }
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

/** Turns a thrown value into a gRPC status object. */
export function toGrpcError(err: unknown): grpc.ServiceError {
  const code = codeOf(err);
  const message = boundedStatusMessage(messageOf(err));
  const e = new Error(message) as grpc.ServiceError;
  e.code = code === Code.OK ? Code.UNKNOWN : code;
  e.details = message;
  return e;
}

async function waitDrain(call: grpc.ServerWritableStream<any, any>): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const done = () => { call.off('drain', done); call.off('close', done); call.off('error', reject); resolve(); };
    call.once('drain', done);
    call.once('close', done);
    call.once('error', reject);
  });
}

/**
 * Builds the grpc-js implementation of `def` from async handlers. `log` gets one debug line
 * per call with its method, namespace and duration.
 */
export function implement<D extends ServiceDef>(def: D, handlers: Handlers<D>, log?: Logger): GrpcServiceBinding {
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(def)) {
    const handler = (handlers as Record<string, unknown>)[name] as ((...args: any[]) => Promise<any>) | undefined;
    const trace = (ctx: CallContext, started: number, err?: unknown) => {
      if (log?.debugEnabled) {
        log.debug('request', { method: method.path, namespace: ctx.namespace, ms: +(performance.now() - started).toFixed(2), error: err ? messageOf(err) : undefined });
      }
    };
    if (method.requestStream) {
      implementation[name] = ((call: grpc.ServerDuplexStream<any, any>) => {
        const { ctx, settled } = contextOf(call);
        const started = performance.now();
        if (!handler) {
          call.emit('error', toGrpcError(new NotImplementedError(`${method.path}`)));
          return;
        }
        handler(call, ctx).then(
          () => { settled(); trace(ctx, started); call.end(); },
          (err) => { settled(); trace(ctx, started, err); call.emit('error', toGrpcError(err)); },
        );
      }) as grpc.UntypedHandleCall;
    } else if (method.responseStream) {
      implementation[name] = ((call: grpc.ServerWritableStream<any, any>) => {
        const { ctx, settled } = contextOf(call);
        const started = performance.now();
        if (!handler) {
          call.emit('error', toGrpcError(new NotImplementedError(`${method.path}`)));
          return;
        }
        const send = async (res: unknown) => {
          if (!call.write(res)) await waitDrain(call);
        };
        handler(call.request, ctx, send).then(
          () => { settled(); trace(ctx, started); call.end(); },
          (err) => { settled(); trace(ctx, started, err); call.emit('error', toGrpcError(err)); },
        );
      }) as grpc.UntypedHandleCall;
    } else {
      implementation[name] = ((call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) => {
        const { ctx, settled } = contextOf(call);
        const started = performance.now();
        if (!handler) {
          callback(toGrpcError(new NotImplementedError(`${method.path}`)));
          return;
        }
        handler(call.request, ctx).then(
          (res) => { settled(); trace(ctx, started); callback(null, res); },
          (err) => { settled(); trace(ctx, started, err); callback(toGrpcError(err)); },
        );
      }) as grpc.UntypedHandleCall;
    }
  }
  return { definition: def, implementation };
}

/** A plugin instance that serves gRPC services (io.containerd.grpc.v1 plugins). */
export interface GrpcPlugin {
  grpcServices(): GrpcServiceBinding[];
}

export const isGrpcPlugin = (x: unknown): x is GrpcPlugin =>
  !!x && typeof (x as GrpcPlugin).grpcServices === 'function';
