/**
 * mount(2) with a chosen working directory, for overlay mounts whose lowerdir list had to be
 * made relative (see compactLowerdirOption): the kernel resolves relative lowerdirs against the
 * caller's cwd.
 *
 * containerd forks a thread that fchdir()s and mounts. Node's process.chdir changes the cwd of
 * the whole process (every in-flight fs call would see it), so berth instead runs the one mount
 * in a short-lived `node -e` child started with that cwd. The child uses the same koffi/libc
 * call as syscalls.ts. It is chosen over mount(8) because util-linux may canonicalize or
 * re-split options, and a tool version difference must not change what reaches the kernel.
 * The cost (one node start, roughly 0.1 s) only applies to mounts that exceed the page limit.
 */
import { createRequire } from 'node:module';
import { isAbsolute } from 'node:path';
import { InvalidArgumentError } from '../errdefs/errdefs.js';
import { syscallError } from '../sys/errno.js';
import { LIBC_CANDIDATES } from '../sys/syscalls.js';

interface ChildRequest {
  koffi: string;
  libc: string[];
  source: string;
  target: string;
  fstype: string;
  flags: number;
  data: string;
}

// CommonJS on purpose: `require` of an absolute path does not depend on the child's cwd.
const CHILD_SCRIPT = `
const req = JSON.parse(process.argv[1]);
const koffi = require(req.koffi);
let lib;
for (const name of req.libc) { try { lib = koffi.load(name); break; } catch {} }
const mount = lib.func('int mount(const char *, const char *, const char *, unsigned long, const char *)');
koffi.errno(0);
if (mount(req.source, req.target, req.fstype, req.flags, req.data || null) !== 0) {
  process.stdout.write(JSON.stringify({ errno: koffi.errno() }));
  process.exitCode = 1;
}
`;

export async function mountInDirectory(
  cwd: string,
  source: string,
  target: string,
  fstype: string,
  flags: number,
  data: string,
): Promise<void> {
  if (!isAbsolute(target)) throw new InvalidArgumentError(`mount target ${JSON.stringify(target)} must be absolute`);
  const request: ChildRequest = {
    koffi: createRequire(import.meta.url).resolve('koffi'),
    libc: LIBC_CANDIDATES,
    source,
    target,
    fstype,
    flags,
    data,
  };
  // Loaded on demand: most daemons never mount an overlay this large.
  const { execa } = await import('execa');
  const result = await execa(process.execPath, ['-e', CHILD_SCRIPT, '--', JSON.stringify(request)], {
    cwd,
    reject: false,
    stdin: 'ignore',
  });
  if (result.exitCode === 0) return;
  let errno: number | undefined;
  try {
    errno = (JSON.parse(result.stdout) as { errno?: number }).errno;
  } catch {
    // fall through: the child died before reporting (bad koffi path, signal, ...)
  }
  if (errno) throw syscallError(errno, 'mount', target, `type ${JSON.stringify(fstype)}, cwd ${cwd}`);
  throw new Error(`mount helper for ${target} failed: ${result.stderr || result.shortMessage}`);
}
