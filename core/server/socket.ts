/**
 * Unix socket housekeeping shared by the gRPC and ttrpc listeners: a stale socket file left
 * by a crashed daemon is replaced, but a live one (another daemon answering on it) is an
 * error rather than silently stolen.
 */
import { chmodSync, chownSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { FailedPreconditionError, InvalidArgumentError } from '../errdefs/errdefs.js';
import { makeDirectories } from '../sys/mkdir.js';

/** Resolves true when something accepts connections on the socket path. */
export function socketIsLive(path: string, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    const timer = setTimeout(() => { s.destroy(); resolve(false); }, timeoutMs);
    s.once('connect', () => { clearTimeout(timer); s.destroy(); resolve(true); });
    s.once('error', () => { clearTimeout(timer); resolve(false); });
  });
}

/**
 * Makes `path` free to bind: creates its directory, removes a stale socket (or any other file
 * in the way, as containerd unlinks it), refuses a live one and a directory.
 */
export async function prepareSocketPath(path: string): Promise<void> {
  try {
    makeDirectories(dirname(path), 0o711);
  } catch (err) {
    throw new InvalidArgumentError(`socket ${path}: ${(err as Error).message}`);
  }
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st) return;
  if (st.isDirectory()) throw new InvalidArgumentError(`socket ${path} is a directory`);
  if (await socketIsLive(path)) {
    throw new FailedPreconditionError(`${path}: another daemon is already serving on this socket`);
  }
  rmSync(path, { force: true });
}

/** Sets the socket's mode 0660 and owner, as containerd does for its API socket. */
export function secureSocket(path: string, uid: number, gid: number): void {
  chmodSync(path, 0o660);
  if (uid !== 0 || gid !== 0) chownSync(path, uid, gid);
}

/** Strips a `unix://` scheme. */
export const socketPath = (address: string) => address.replace(/^unix:\/\//, '');
