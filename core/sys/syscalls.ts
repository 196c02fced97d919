/**
 * The handful of Linux syscalls a container daemon needs and Node does not expose:
 * mount(2)/umount2(2) (rootfs and snapshot mounts), prctl(PR_SET_CHILD_SUBREAPER) (so orphaned
 * container processes get re-parented to us and can be reaped), pidfd_open/pidfd_send_signal
 * (race-free signalling of a pid that might be recycled), ioctl (loop devices) and sysconf
 * (page size for the mount data limit).
 *
 * They are called through koffi against libc. libc and koffi are loaded on first use, not at
 * import, so modules that merely import this file (or run on a platform without koffi's
 * prebuilt binary) pay nothing. Calls are synchronous: these syscalls return quickly, and
 * koffi's async mode runs on a worker thread where errno can no longer be read reliably.
 *
 * Failures throw Node-style errors (see errno.ts) with `code` ('EBUSY', 'EINVAL', ...).
 */
import { constants as osConstants } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { syscallError } from './errno.js';

type Koffi = typeof import('koffi');
type Fn = (...args: unknown[]) => number;

interface Libc {
  koffi: Koffi;
  mount: Fn;
  umount2: Fn;
  prctl: Fn;
  syscall: Fn;
  ioctl: Fn;
  sysconf: Fn;
  flock: Fn;
  /** `int *` out-parameter type for prctl(PR_GET_*). */
  intOut: unknown;
}

// glibc first; musl names its libc after the architecture.
export const LIBC_CANDIDATES = ['libc.so.6', `libc.musl-${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}.so.1`];

/** koffi and a handle on the process's libc, for declaring functions. */
export interface LibcHandle {
  koffi: Koffi;
  lib: ReturnType<Koffi['load']>;
}

let handle: LibcHandle | undefined;

/**
 * koffi's native addon. Its package entry (index.js) wraps the addon with deprecated aliases
 * only, but loads https, crypto and zlib for its install-time tools: ~7 ms of a daemon's
 * start-up for modules it does not use. So the prebuilt addon for this platform is loaded
 * directly, and the package entry is the fallback (another architecture naming, a build
 * from source, an addon whose version does not match the package).
 */
export function loadKoffi(): Koffi {
  const require = createRequire(import.meta.url);
  try {
    const pkgFile = require.resolve('koffi/package.json');
    const { version } = require(pkgFile) as { version: string };
    const native = require(join(dirname(pkgFile), 'build', 'koffi', `${process.platform}_${process.arch}`, 'koffi.node')) as Koffi & { version?: string };
    if (native.version === version) return native;
  } catch { /* no prebuilt addon under that name: the package entry finds the right one */ }
  return require('koffi') as Koffi;
}

/**
 * Loads koffi and libc once for every FFI user in the process (each declares its own
 * functions on the handle). Throws, naming the cause, where either is unavailable.
 */
export function openLibc(): LibcHandle {
  if (handle) return handle;
  if (process.platform !== 'linux') throw new Error(`berth's system calls need Linux, running on ${process.platform}`);
  const koffi = loadKoffi();
  let lastErr: unknown;
  for (const name of LIBC_CANDIDATES) {
    try {
      handle = { koffi, lib: koffi.load(name) };
      return handle;
    } catch (err) {
      lastErr = err;
    }
  }
  throw new Error('cannot load libc via koffi', { cause: lastErr });
}

let libc: Libc | undefined;

function load(): Libc {
  if (libc) return libc;
  const { koffi, lib } = openLibc();
  const fn = (decl: string) => lib.func(decl) as unknown as Fn;
  libc = {
    koffi,
    mount: fn('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)'),
    umount2: fn('int umount2(const char *target, int flags)'),
    // prctl, syscall and ioctl are variadic in libc; koffi needs the type of each extra argument at the call.
    prctl: fn('int prctl(int option, ...)'),
    syscall: fn('long syscall(long number, ...)'),
    ioctl: fn('int ioctl(int fd, unsigned long request, ...)'),
    sysconf: fn('long sysconf(int name)'),
    flock: fn('int flock(int fd, int operation)'),
    intOut: koffi.out(koffi.pointer('int')),
  };
  return libc;
}

/**
 * Runs one libc call and converts a -1 return into a thrown error. errno is cleared first and
 * read right after the call, before any other JS work can disturb it.
 */
function check(call: (l: Libc) => number, syscall: string, path?: string, detail?: string): number {
  const l = load();
  l.koffi.errno(0);
  const ret = call(l);
  if (ret === -1) throw syscallError(l.koffi.errno(), syscall, path, detail);
  return ret;
}

function flagsArg(flags: bigint | number, what: string): bigint {
  const value = BigInt(flags);
  if (value < 0n) throw new RangeError(`${what} must be non-negative, got ${flags}`);
  return value;
}

/**
 * mount(2). `source`, `fstype` and `data` may be null where the kernel ignores them
 * (remounts, propagation changes). Errors carry `path` = target.
 */
export function mount(
  source: string | null,
  target: string,
  fstype: string | null,
  flags: bigint | number,
  data: string | null,
): void {
  const f = flagsArg(flags, 'mount flags');
  const detail = `source ${JSON.stringify(source ?? '')}, type ${JSON.stringify(fstype ?? '')}, flags 0x${f.toString(16)}`;
  check((l) => l.mount(source, target, fstype, f, data), 'mount', target, detail);
}

/** umount2(2); `flags` is a mask of MNT_FORCE/MNT_DETACH/MNT_EXPIRE/UMOUNT_NOFOLLOW. */
export function umount2(target: string, flags = 0): void {
  check((l) => l.umount2(target, flags), 'umount2', target);
}

const PR_SET_CHILD_SUBREAPER = 36;
const PR_GET_CHILD_SUBREAPER = 37;

/**
 * Marks this process as a child subreaper: orphaned descendants are re-parented to it instead
 * of to init, which is what lets a shim reap the container's processes.
 */
export function prctlSetChildSubreaper(enable = true): void {
  const ul = 'unsigned long';
  check((l) => l.prctl(PR_SET_CHILD_SUBREAPER, ul, enable ? 1 : 0, ul, 0, ul, 0, ul, 0), 'prctl');
}

/** Whether this process is currently a child subreaper. */
export function prctlGetChildSubreaper(): boolean {
  const out = [0];
  check((l) => l.prctl(PR_GET_CHILD_SUBREAPER, l.intOut, out), 'prctl');
  return out[0] !== 0;
}

// Syscalls added after 5.1 share one number on every architecture, so no per-arch table.
const SYS_PIDFD_SEND_SIGNAL = 424;
const SYS_PIDFD_OPEN = 434;

/**
 * pidfd_open(2): a file descriptor referring to `pid` that stays valid (and keeps pointing at
 * the same process) even if the pid number is recycled. Close it with fs.closeSync.
 * glibc only gained a wrapper in 2.36, hence the raw syscall.
 */
export function pidfdOpen(pid: number, flags = 0): number {
  return check((l) => l.syscall(SYS_PIDFD_OPEN, 'int', pid, 'unsigned int', flags), 'pidfd_open', undefined, `pid ${pid}`);
}

/** pidfd_send_signal(2): signals the exact process behind a pidfd (ESRCH once it has exited). */
export function pidfdSendSignal(pidfd: number, signal: NodeJS.Signals | number): void {
  const signo = typeof signal === 'number' ? signal : osConstants.signals[signal];
  if (signo === undefined) throw new RangeError(`unknown signal ${String(signal)}`);
  check(
    (l) => l.syscall(SYS_PIDFD_SEND_SIGNAL, 'int', pidfd, 'int', signo, 'void *', null, 'unsigned int', 0),
    'pidfd_send_signal',
    undefined,
    `pidfd ${pidfd}, signal ${signo}`,
  );
}

/** ioctl(2) with an integer argument or a pointer to `arg`'s bytes (the kernel may write into it). */
export function ioctl(fd: number, request: number, arg: number | Buffer = 0, path?: string): number {
  return typeof arg === 'number'
    ? check((l) => l.ioctl(fd, request, 'unsigned long', arg), 'ioctl', path)
    : check((l) => l.ioctl(fd, request, 'void *', arg), 'ioctl', path);
}

/** flock(2) operations. */
export const LOCK_EX = 2;
export const LOCK_NB = 4;

/**
 * flock(2): an advisory lock on the open file behind `fd`, released when every descriptor
 * sharing that open file is closed (so also when the process dies). With LOCK_NB a held lock
 * fails at once with EWOULDBLOCK (named EAGAIN, the same number) instead of waiting.
 */
export function flock(fd: number, operation: number, path?: string): void {
  check((l) => l.flock(fd, operation), 'flock', path);
}

const SC_PAGESIZE = 30;
let cachedPageSize: number | undefined;

/** The system page size: the most bytes mount(2) copies from its data argument. */
export function pageSize(): number {
  cachedPageSize ??= check((l) => l.sysconf(SC_PAGESIZE), 'sysconf');
  return cachedPageSize;
}
