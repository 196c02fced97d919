/** Translation between JavaScript errors and the google.rpc.Status carried in ttrpc responses. */
import { Code, codeOf, fromStatus, messageOf, UnavailableError, type BerthError } from '../../core/errdefs/errdefs.js';
import type { Status } from '../gen/google/rpc/status.js';
import type { Response } from '../gen/ttrpc/ttrpc.js';

export { Code };

const MAX_CODE = 16;

/**
 * The status a handler error is answered with. An explicit numeric `code` (gRPC range)
 * wins, so errors relayed from another peer keep their code; anything else is classified
 * like the rest of the daemon does (errdefs classes, errno, aborts), defaulting to UNKNOWN.
 */
export function statusFromError(err: unknown): Status {
  const explicit = (err as { code?: unknown } | null)?.code;
  // A thrown error is never a success, so code 0 is not honoured.
  const code = typeof explicit === 'number' && Number.isInteger(explicit) && explicit > 0 && explicit <= MAX_CODE
    ? explicit
    : codeOf(err);
  return { code, message: messageOf(err), details: [] };
}

export function okStatus(): Status {
  return { code: Code.OK, message: '', details: [] };
}

/** A response envelope that carries only a failure status. */
export function errorResponse(code: number, message: string): Response {
  return { status: { code, message, details: [] }, payload: Buffer.alloc(0) };
}

export function isOk(status: Status | undefined): boolean {
  return !status || status.code === Code.OK;
}

/** The error a client call rejects with for a non-OK status. */
export function errorFromStatus(status: Status): BerthError {
  return fromStatus(status.code, status.message);
}

/** Raised for calls that cannot complete because the connection is gone. */
export class TtrpcClosedError extends UnavailableError {
  constructor(options?: { cause?: unknown }) {
    super('ttrpc: closed', options);
  }
}
