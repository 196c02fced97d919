/**
 * The listening socket the daemon hands to containerd-shim (runtime v1) as fd 3. Node's net
 * module cannot be used for it: a Node server would accept connections itself (racing the
 * shim on the shared listener) and libuv unlinks the socket file when the handle closes. So
 * the socket is a raw AF_UNIX descriptor made through koffi; the daemon closes its copy as
 * soon as the shim has been started.
 *
 * koffi and libc load on the first call, like core/sys.
 */
import { syscallError } from '../../../core/sys/errno.js';
import { openLibc } from '../../../core/sys/syscalls.js';

type Koffi = typeof import('koffi');
type Fn = (...args: unknown[]) => number;

interface SocketCalls {
  koffi: Koffi;
  socket: Fn;
  bind: Fn;
  listen: Fn;
  close: Fn;
}

let calls: SocketCalls | undefined;

function libc(): SocketCalls {
  if (calls) return calls;
  const { koffi, lib: h } = openLibc();
  const fn = (decl: string) => h.func(decl) as unknown as Fn;
  calls = {
    koffi,
    socket: fn('int socket(int domain, int type, int protocol)'),
    bind: fn('int bind(int fd, const uint8_t *addr, uint32_t len)'),
    listen: fn('int listen(int fd, int backlog)'),
    close: fn('int close(int fd)'),
  };
  return calls;
}

function checked(call: (c: SocketCalls) => number, syscall: string, path?: string): number {
  const c = libc();
  c.koffi.errno(0);
  const ret = Number(call(c));
  if (ret === -1) throw syscallError(c.koffi.errno(), syscall, path);
  return ret;
}

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
/** sizeof(sockaddr_un.sun_path) on Linux. */
const SUN_PATH_LEN = 108;
/** Go's net.Listen("unix") backlog is the kernel's somaxconn; 4096 on current kernels. */
const BACKLOG = 4096;

/**
 * socket + bind + listen on `path` ('\0'-prefixed for an abstract name). The descriptor is
 * close-on-exec (spawn dup2's it into the child without that flag) and blocking, which is how
 * a Go program expects to receive an inherited listener.
 */
export function listenUnixSocket(path: string): number {
  const name = Buffer.from(path, 'utf8');
  if (name.length >= SUN_PATH_LEN) throw new RangeError(`${JSON.stringify(path)}: unix socket path too long (> ${SUN_PATH_LEN - 1})`);
  const fd = checked((c) => c.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), 'socket');
  try {
    const addr = Buffer.alloc(2 + name.length + (path.startsWith('\0') ? 0 : 1));
    addr.writeUInt16LE(AF_UNIX, 0);
    name.copy(addr, 2);
    checked((c) => c.bind(fd, addr, addr.length), 'bind', path.replace(/^\0/, '@'));
    checked((c) => c.listen(fd, BACKLOG), 'listen', path.replace(/^\0/, '@'));
    return fd;
  } catch (err) {
    closeDescriptor(fd);
    throw err;
  }
}

/** close(2) for a descriptor made here; errors (already closed) are ignored. */
export function closeDescriptor(fd: number): void {
  try {
    checked((c) => c.close(fd), 'close');
  } catch {
    // nothing left to release
  }
}
