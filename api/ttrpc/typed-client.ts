/** Typed stubs over TtrpcClient, built from the same ts-proto definitions the gRPC side uses. */
import type { CallOptions, TtrpcClient } from './client.js';
import { NAMESPACE_METADATA_KEY, type MetadataInit } from './metadata.js';
import { unaryMethods, type RequestOf, type ResponseOf, type UnaryKeys } from './service.js';

export interface TypedCallOptions extends CallOptions {
  /** Overrides the client-wide namespace for this call. */
  namespace?: string;
}

export interface TypedClientDefaults {
  /** Sent as `containerd-namespace-ttrpc` metadata on every call. */
  namespace?: string;
  timeoutMs?: number;
  metadata?: MetadataInit;
}

export type TypedClient<Def> = {
  [K in UnaryKeys<Def>]: (request: RequestOf<Def[K]>, options?: TypedCallOptions) => Promise<ResponseOf<Def[K]>>;
};

export function typedClient<Def extends object>(
  client: TtrpcClient,
  def: Def,
  defaults: TypedClientDefaults = {},
): TypedClient<Def> {
  const stubs: Record<string, (request: unknown, options?: TypedCallOptions) => Promise<unknown>> = {};
  for (const { key, definition, service, method } of unaryMethods(def)) {
    stubs[key] = async (request, options = {}) => {
      const namespace = options.namespace ?? defaults.namespace;
      const metadata: MetadataInit = {
        ...defaults.metadata,
        ...(namespace === undefined ? {} : { [NAMESPACE_METADATA_KEY]: namespace }),
        ...options.metadata,
      };
      const payload = await client.call(service, method, definition.requestSerialize(request), {
        metadata,
        timeoutMs: options.timeoutMs ?? defaults.timeoutMs,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      return definition.responseDeserialize(payload);
    };
  }
  return stubs as TypedClient<Def>;
}
