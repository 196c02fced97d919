/**
 * One error vocabulary for the whole daemon, mirroring containerd's errdefs classes.
 * Domain code throws these; only the gRPC/ttrpc boundaries translate them to status codes
 * (see grpc.ts). Messages end with the class suffix ("…: not found") because the real ctr
 * prints the server's message and strips exactly that suffix.
 */

/** gRPC status codes used by the daemon (numeric values are the wire values). */
export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
} as const;
export type Code = (typeof Code)[keyof typeof Code];

/** Base of every classified error: carries the gRPC code it maps to. */
export abstract class BerthError extends Error {
  abstract readonly code: Code;
  /** The suffix containerd appends for this class (empty when it appends none). */
  protected static suffix = '';
  constructor(context: string, options?: { cause?: unknown }) {
    super(context, options);
    this.name = new.target.name;
  }
}

function classify(suffix: string, code: Code, name: string) {
  const cls = class extends BerthError {
    readonly code = code;
    constructor(context: string, options?: { cause?: unknown }) {
      super(suffix && !context.endsWith(suffix) ? `${context}: ${suffix}` : context, options);
    }
  };
  Object.defineProperty(cls, 'name', { value: name });
  return cls;
}

export const InvalidArgumentError = classify('invalid argument', Code.INVALID_ARGUMENT, 'InvalidArgumentError');
export const NotFoundError = classify('not found', Code.NOT_FOUND, 'NotFoundError');
export const AlreadyExistsError = classify('already exists', Code.ALREADY_EXISTS, 'AlreadyExistsError');
export const FailedPreconditionError = classify('failed precondition', Code.FAILED_PRECONDITION, 'FailedPreconditionError');
/** containerd's "conflict" class; on the wire it is FAILED_PRECONDITION too. */
export const ConflictError = classify('conflict', Code.FAILED_PRECONDITION, 'ConflictError');
export const UnavailableError = classify('unavailable', Code.UNAVAILABLE, 'UnavailableError');
export const NotImplementedError = classify('not implemented', Code.UNIMPLEMENTED, 'NotImplementedError');
export const OutOfRangeError = classify('', Code.OUT_OF_RANGE, 'OutOfRangeError');
export const DataLossError = classify('', Code.DATA_LOSS, 'DataLossError');
export const CanceledError = classify('', Code.CANCELLED, 'CanceledError');
export const DeadlineExceededError = classify('', Code.DEADLINE_EXCEEDED, 'DeadlineExceededError');
export const ResourceExhaustedError = classify('', Code.RESOURCE_EXHAUSTED, 'ResourceExhaustedError');
export const PermissionDeniedError = classify('', Code.PERMISSION_DENIED, 'PermissionDeniedError');

export type ErrorClass = ReturnType<typeof classify>;

/** An error received from a peer (gRPC or ttrpc) that keeps the peer's code and message. */
export class RemoteError extends BerthError {
  constructor(readonly code: Code, message: string) {
    super(message);
  }
}

/** The gRPC code an error maps to, looking through the cause chain; UNKNOWN when unclassified. */
export function codeOf(err: unknown): Code {
  for (let e: unknown = err, depth = 0; e && depth < 16; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof BerthError) return e.code;
    const sys = (e as NodeJS.ErrnoException).code;
    if (sys === 'ENOENT') return Code.NOT_FOUND;
    if (sys === 'EEXIST') return Code.ALREADY_EXISTS;
    // A full disk, seen by the file system or by SQLite (the metadata database).
    if (sys === 'ENOSPC' || sys === 'EDQUOT' || sys === 'SQLITE_FULL') return Code.RESOURCE_EXHAUSTED;
    if ((e as Error).name === 'AbortError') return Code.CANCELLED;
  }
  return Code.UNKNOWN;
}

export const isNotFound = (err: unknown) => codeOf(err) === Code.NOT_FOUND;
export const isAlreadyExists = (err: unknown) => codeOf(err) === Code.ALREADY_EXISTS;
export const isInvalidArgument = (err: unknown) => codeOf(err) === Code.INVALID_ARGUMENT;
export const isFailedPrecondition = (err: unknown) => codeOf(err) === Code.FAILED_PRECONDITION;
export const isUnavailable = (err: unknown) => codeOf(err) === Code.UNAVAILABLE;
export const isNotImplemented = (err: unknown) => codeOf(err) === Code.UNIMPLEMENTED;

/** Message of any thrown value. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Rebuilds a classified error from a wire status (what a client receives). */
export function fromStatus(code: number, message: string): BerthError {
  const strip = (suffix: string) => (message.endsWith(`: ${suffix}`) ? message.slice(0, -suffix.length - 2) : message);
  switch (code) {
    case Code.INVALID_ARGUMENT: return new InvalidArgumentError(strip('invalid argument'));
    case Code.NOT_FOUND: return new NotFoundError(strip('not found'));
    case Code.ALREADY_EXISTS: return new AlreadyExistsError(strip('already exists'));
    case Code.FAILED_PRECONDITION: return new FailedPreconditionError(strip('failed precondition'));
    case Code.UNAVAILABLE: return new UnavailableError(strip('unavailable'));
    case Code.UNIMPLEMENTED: return new NotImplementedError(strip('not implemented'));
    default: return new RemoteError(code as Code, message);
  }
}
