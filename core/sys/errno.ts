/**
 * Node-style errors for failed raw syscalls.
 *
 * The FFI layer only gets a bare errno back from libc; callers everywhere else in the daemon
 * already understand Node's `ErrnoException` shape (`code` such as 'EBUSY', negative `errno`,
 * `syscall`, `path`), and errdefs.codeOf maps ENOENT/EEXIST from it, so we produce exactly that.
 */
import { getSystemErrorMap } from 'node:util';

/** Thrown by every wrapper in syscalls.ts when the kernel returns -1. */
export interface SyscallError extends NodeJS.ErrnoException {
  code: string;
  errno: number;
  syscall: string;
}

let errorMap: Map<number, [string, string]> | undefined;

/** Linux errnos libuv has no name for but the daemon meets (waitid, ioctl, xattrs). */
const LINUX_EXTRA: Record<number, [string, string]> = {
  10: ['ECHILD', 'no child processes'],
  61: ['ENODATA', 'no data available'],
  25: ['ENOTTY', 'inappropriate ioctl for device'],
  37: ['ENOLCK', 'no locks available'],
  95: ['EOPNOTSUPP', 'operation not supported'],
};

/** 'EBUSY' etc. for a positive errno; falls back to 'E<n>' for numbers nobody knows. */
export function errnoName(errno: number): string {
  errorMap ??= getSystemErrorMap();
  return errorMap.get(-Math.abs(errno))?.[0] ?? LINUX_EXTRA[Math.abs(errno)]?.[0] ?? `E${errno}`;
}

function errnoDescription(errno: number): string {
  errorMap ??= getSystemErrorMap();
  return errorMap.get(-Math.abs(errno))?.[1] ?? LINUX_EXTRA[Math.abs(errno)]?.[1] ?? `errno ${errno}`;
}

/**
 * A failed file-system call's reason as Go words it ("no such file or directory"), for
 * messages that must read like containerd's or ctr's: libuv's description of the errno, which
 * is the C library's text except for EISDIR.
 */
export function goErrnoText(err: NodeJS.ErrnoException): string {
  if (err.code === 'EISDIR') return 'is a directory';
  return err.errno === undefined ? err.message : errnoDescription(err.errno);
}

/**
 * Builds the error. Like Node's own fs errors, `errno` is negative (libuv convention) and the
 * message reads "CODE: description, syscall 'path'" so logs look the same as fs failures.
 */
export function syscallError(errno: number, syscall: string, path?: string, detail?: string): SyscallError {
  const code = errnoName(errno);
  let message = `${code}: ${errnoDescription(errno)}, ${syscall}`;
  if (path !== undefined) message += ` '${path}'`;
  if (detail) message += ` (${detail})`;
  const err = new Error(message) as SyscallError;
  err.code = code;
  err.errno = -Math.abs(errno);
  err.syscall = syscall;
  if (path !== undefined) err.path = path;
  Error.captureStackTrace(err, syscallError);
  return err;
}

/** True when `err` is a syscall/fs error with the given code (e.g. 'EINVAL'). */
export function hasErrnoCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code;
}
