/**
 * Request context and namespaces. Every namespaced call carries its namespace in the
 * `containerd-namespace` gRPC header (`containerd-namespace-ttrpc` on ttrpc) and an optional
 * lease in `containerd-lease`; services read them from a RequestContext built at the boundary.
 */
import { FailedPreconditionError, InvalidArgumentError } from '../errdefs/errdefs.js';
import { validateIdentifier } from '../identifiers/identifiers.js';

export const NAMESPACE_HEADER = 'containerd-namespace';
export const NAMESPACE_TTRPC_HEADER = 'containerd-namespace-ttrpc';
export const LEASE_HEADER = 'containerd-lease';
/** Label on a namespace naming its default snapshotter (read by clients during unpack). */
export const DEFAULT_SNAPSHOTTER_LABEL = 'containerd.io/defaults/snapshotter';
export const DEFAULT_NAMESPACE = 'default';

/** What a service knows about the call it is serving. */
export interface RequestContext {
  namespace?: string;
  lease?: string;
  signal?: AbortSignal;
}

/** Validates a namespace name with containerd's wording. */
export function validateNamespace(ns: string): void {
  try {
    validateIdentifier(ns);
  } catch (err) {
    throw new InvalidArgumentError(`namespace validation: ${(err as Error).message.replace(/: invalid argument$/, '')}`);
  }
}

/** The request's namespace; FAILED_PRECONDITION when absent, INVALID_ARGUMENT when malformed. */
export function namespaceRequired(ctx: RequestContext): string {
  const ns = ctx.namespace;
  if (!ns) throw new FailedPreconditionError('namespace is required');
  validateNamespace(ns);
  return ns;
}
