/**
 * One daemon per root and per state directory. Two daemons on one root would each treat the
 * other's work in progress as debris: the second one's boot cleans "orphaned" snapshot
 * directories, stale ingests and temporary mounts that belong to the first, before it ever
 * finds the first one's socket. On one state directory, the second would load the first
 * one's task bundles and take over, or clean up, its shims. containerd gets the root's guard
 * from its metadata database's file lock; berthd takes explicit ones, `berthd.lock` in each
 * directory, before any plugin starts. The lock (flock) goes with the process, so a daemon
 * killed with SIGKILL leaves nothing to clean up, and the file names the pid of the daemon
 * holding it.
 */
import { closeSync, constants, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { FailedPreconditionError, InvalidArgumentError } from '../errdefs/errdefs.js';
import { makeDirectories } from '../sys/mkdir.js';
import { flock, LOCK_EX, LOCK_NB } from '../sys/syscalls.js';

const DAEMON_LOCK_FILE = 'berthd.lock';

export interface DirectoryLock {
  readonly path: string;
  /**
   * Why the directory could not be locked although no other daemon holds it (a file system
   * without flock, such as some FUSE ones): the daemon runs unguarded and says so.
   */
  readonly unsupported?: string;
  release(): void;
}

/**
 * Creates the daemon's `root` or `state` directory (mode 0711) if need be, and takes its lock.
 * A path that cannot be the directory fails naming it and why.
 */
export function claimDaemonDirectory(what: 'root' | 'state', dir: string): DirectoryLock {
  try {
    makeDirectories(dir, 0o711);
  } catch (err) {
    throw new InvalidArgumentError(`${what} ${dir}: ${(err as Error).message}`);
  }
  return lockDaemonDirectory(what, dir);
}

/**
 * Takes the lock of the daemon's `root` or `state` directory (`what`, for the message) or
 * fails, naming the daemon that holds it.
 */
function lockDaemonDirectory(what: 'root' | 'state', dir: string): DirectoryLock {
  const path = join(dir, DAEMON_LOCK_FILE);
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600); // libuv adds O_CLOEXEC: shims never inherit it
  try {
    flock(fd, LOCK_EX | LOCK_NB, path);
  } catch (err) {
    closeSync(fd);
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOLCK' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS' || code === 'EINVAL') {
      return { path, unsupported: (err as Error).message, release: () => undefined };
    }
    if (code !== 'EAGAIN') throw err;
    let holder = '';
    try { holder = readFileSync(path, 'utf8').trim(); } catch { /* the holder is unnamed */ }
    throw new FailedPreconditionError(
      `${what} ${dir} is in use by another berthd${/^\d+$/.test(holder) ? ` (pid ${holder})` : ''}: ${path} is locked`,
    );
  }
  ftruncateSync(fd, 0);
  writeSync(fd, `${process.pid}\n`, 0);
  let released = false;
  return {
    path,
    release: () => {
      if (released) return;
      released = true;
      closeSync(fd);
    },
  };
}
