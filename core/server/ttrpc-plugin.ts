/** A plugin instance that serves ttrpc services on the daemon's ttrpc socket (shims call these). */
import type { ServiceDef } from './grpc-adapter.js';

export interface TtrpcServiceBinding {
  definition: ServiceDef;
  /** camelCase method name → async handler(request, ctx). */
  handlers: Record<string, (req: any, ctx: { namespace?: string; signal: AbortSignal }) => Promise<unknown>>;
}

export interface TtrpcPlugin {
  ttrpcServices(): TtrpcServiceBinding[];
}

export const isTtrpcPlugin = (x: unknown): x is TtrpcPlugin =>
  !!x && typeof (x as TtrpcPlugin).ttrpcServices === 'function';
