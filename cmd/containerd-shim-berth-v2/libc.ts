/**
 * The libc calls the shim needs beyond core/sys/syscalls.ts: waitid(2) for reaping container
 * processes by pid, pipe2(2) for the stdio pipes handed to runc, fcntl(2) for O_NONBLOCK on a
 * pty master, and the unix-socket calls that receive a pty master fd from runc
 * (--console-socket) with SCM_RIGHTS, which Node's net module cannot do.
 *
 * koffi and libc load on first use, so the `start`/`delete` actions never pay for them unless
 * they need them. Like core/sys, calls are synchronous and errno is read straight after them.
 */
import { syscallError } from '../../core/sys/errno.js';
import { openLibc } from '../../core/sys/syscalls.js';

type Koffi = typeof import('koffi');
type Fn = (...args: unknown[]) => number;

interface Bindings {
  koffi: Koffi;
  waitid: Fn;
  pipe2: Fn;
  fcntl: Fn;
  socket: Fn;
  bind: Fn;
  listen: Fn;
  accept4: Fn;
  recvmsg: Fn;
  close: Fn;
}

let bindings: Bindings | undefined;

function load(): Bindings {
  if (bindings) return bindings;
  const { koffi, lib } = openLibc();
  // Struct shapes for recvmsg(2); pointer members accept Buffers, which koffi passes in place.
  koffi.struct('berth_iovec', { iov_base: 'void *', iov_len: 'size_t' });
  koffi.struct('berth_msghdr', {
    msg_name: 'void *',
    msg_namelen: 'uint32_t',
    msg_iov: 'berth_iovec *',
    msg_iovlen: 'size_t',
    msg_control: 'void *',
    msg_controllen: 'size_t',
    msg_flags: 'int',
  });
  const fn = (decl: string) => lib.func(decl) as unknown as Fn;
  bindings = {
    koffi,
    waitid: fn('int waitid(int idtype, uint32_t id, _Out_ uint8_t *infop, int options)'),
    pipe2: fn('int pipe2(_Out_ int *fds, int flags)'),
    fcntl: fn('int fcntl(int fd, int cmd, ...)'),
    socket: fn('int socket(int domain, int type, int protocol)'),
    bind: fn('int bind(int fd, const uint8_t *addr, uint32_t len)'),
    listen: fn('int listen(int fd, int backlog)'),
    accept4: fn('int accept4(int fd, void *addr, void *len, int flags)'),
    recvmsg: fn('long recvmsg(int fd, _Inout_ berth_msghdr *msg, int flags)'),
    close: fn('int close(int fd)'),
  };
  return bindings;
}

/** errno values whose names libuv's error map lacks (it would call ECHILD "E10"). */
const EXTRA_ERRNO_NAMES: Record<number, string> = { 10: 'ECHILD' };

function check(call: (b: Bindings) => number, syscall: string, detail?: string): number {
  const b = load();
  b.koffi.errno(0);
  const ret = Number(call(b));
  if (ret === -1) {
    const errno = b.koffi.errno();
    const err = syscallError(errno, syscall, undefined, detail);
    const name = EXTRA_ERRNO_NAMES[errno];
    if (name) {
      err.code = name;
      err.message = err.message.replace(/^E\d+: errno \d+/, `${name}: no child processes`);
    }
    throw err;
  }
  return ret;
}

// ---- waitid ----------------------------------------------------------------------------

const P_PID = 1;
const WNOHANG = 1;
const WEXITED = 4;
const CLD_EXITED = 1;
// siginfo_t is 128 bytes; for SIGCHLD si_code sits at offset 8, si_pid at 16, si_status at 24.
const SIGINFO_SIZE = 128;

export interface ChildExit {
  pid: number;
  /** The exit code, or 128 + signal number when the process was killed by a signal. */
  status: number;
}

/**
 * Collects the exit of child `pid` if it has exited (waitid with WNOHANG): null while it still
 * runs. Only this one pid is ever waited for, never "any child", so processes that libuv
 * spawned (runc) keep their exit statuses for libuv. Throws ECHILD when `pid` is not (or no
 * longer) our child.
 */
export function reapPid(pid: number): ChildExit | null {
  const info = Buffer.alloc(SIGINFO_SIZE);
  check((b) => b.waitid(P_PID, pid, info, WEXITED | WNOHANG), 'waitid', `pid ${pid}`);
  const reaped = info.readInt32LE(16);
  if (reaped === 0) return null;
  const code = info.readInt32LE(8);
  const value = info.readInt32LE(24);
  return { pid: reaped, status: code === CLD_EXITED ? value : 128 + value };
}

// ---- pipes and fd flags -----------------------------------------------------------------

const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

/** A pipe with both ends close-on-exec: [read end, write end]. */
export function pipe(): [number, number] {
  const fds = new Int32Array(2);
  check((b) => b.pipe2(fds, O_CLOEXEC), 'pipe2');
  return [fds[0]!, fds[1]!];
}

const F_GETFL = 3;
const F_SETFL = 4;
const F_DUPFD_CLOEXEC = 1030;

export function setNonBlocking(fd: number): void {
  const flags = check((b) => b.fcntl(fd, F_GETFL), 'fcntl');
  check((b) => b.fcntl(fd, F_SETFL, 'int', flags | O_NONBLOCK), 'fcntl');
}

/** A close-on-exec duplicate of `fd` (same open file description). */
export function dupFd(fd: number): number {
  return check((b) => b.fcntl(fd, F_DUPFD_CLOEXEC, 'int', 0), 'fcntl');
}

/** close(2) for descriptors Node does not track (raw sockets made here). */
export function closeFd(fd: number): void {
  try {
    check((b) => b.close(fd), 'close');
  } catch {
    // already closed: nothing to release
  }
}

// ---- unix sockets carrying file descriptors -------------------------------------------------

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = O_NONBLOCK;
const SOCK_CLOEXEC = O_CLOEXEC;
const SUN_PATH_MAX = 108;
const MSG_DONTWAIT = 0x40;
const MSG_CMSG_CLOEXEC = 0x40000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;

/** A listening, non-blocking AF_UNIX stream socket bound to `path`; returns its fd. */
export function listenUnix(path: string, backlog = 1): number {
  const encoded = Buffer.from(path);
  if (encoded.length >= SUN_PATH_MAX) throw new RangeError(`socket path too long: ${path}`);
  const fd = check((b) => b.socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), 'socket');
  try {
    const addr = Buffer.alloc(2 + SUN_PATH_MAX);
    addr.writeUInt16LE(AF_UNIX, 0);
    encoded.copy(addr, 2);
    check((b) => b.bind(fd, addr, addr.length), 'bind', path);
    check((b) => b.listen(fd, backlog), 'listen', path);
    return fd;
  } catch (err) {
    closeFd(fd);
    throw err;
  }
}

/** accept4 on a non-blocking listener: the connection's fd, or null when none is pending. */
export function acceptUnix(listener: number): number | null {
  try {
    return check((b) => b.accept4(listener, null, null, SOCK_CLOEXEC), 'accept4');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return null;
    throw err;
  }
}

export interface ReceivedFd {
  /** The message bytes sent with the descriptor (runc sends the pty's name). */
  message: string;
  fd: number;
}

/**
 * One non-blocking recvmsg: the first descriptor passed with SCM_RIGHTS, or null when nothing
 * has arrived yet. The received descriptor is close-on-exec.
 */
export function receiveFd(conn: number): ReceivedFd | null {
  const data = Buffer.alloc(4096);
  const control = Buffer.alloc(64);
  const msg = {
    msg_name: null,
    msg_namelen: 0,
    msg_iov: [{ iov_base: data, iov_len: data.length }],
    msg_iovlen: 1,
    msg_control: control,
    msg_controllen: control.length,
    msg_flags: 0,
  };
  let n: number;
  try {
    n = check((b) => b.recvmsg(conn, msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC), 'recvmsg');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return null;
    throw err;
  }
  if (n === 0) throw new Error('console socket closed before a descriptor arrived');
  // struct cmsghdr on 64-bit: size_t cmsg_len, int cmsg_level, int cmsg_type, then data.
  const controlLen = Number(msg.msg_controllen);
  if (controlLen < 20) throw new Error('console socket message carried no descriptor');
  const level = control.readInt32LE(8);
  const type = control.readInt32LE(12);
  if (level !== SOL_SOCKET || type !== SCM_RIGHTS) {
    throw new Error(`unexpected control message (level ${level}, type ${type}) on console socket`);
  }
  return { message: data.subarray(0, n).toString(), fd: control.readInt32LE(16) };
}
