/**
 * The `start` action: runs with cwd = bundle, binds the shim socket, records it in the bundle's
 * `address` file, launches the long-lived shim (this program again, in serve mode, with the
 * listener as fd 3, in its own session so it outlives the daemon), prints the address and
 * exits. If the group's shim is already up (its socket answers), its address is printed.
 */
import { spawn } from 'node:child_process';
import { closeSync, constants, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { isatty } from 'node:tty';
import { socketPath } from '../../api/ttrpc/address.js';
import { canConnect, shimGroup, socketAddress } from './address.js';
import { serveArgs, type ShimFlags } from './flags.js';
import { closeFd, listenUnix } from './libc.js';
import { decodeOptions } from './options.js';
import { Any } from '../../api/gen/google/protobuf/any.js';

const LISTEN_BACKLOG = 128;

/** Writes `<dir>/<name>` through a dot-file and rename, as containerd's WriteAddress does. */
export function writeAtomic(dir: string, name: string, content: string): void {
  const temp = join(dir, `.${name}`);
  writeFileSync(temp, content, { mode: 0o666, flag: 'w' });
  renameSync(temp, join(dir, name));
}

/** Binds the socket; null when another live shim already serves it. */
async function bindSocket(address: string): Promise<number | null> {
  const path = socketPath(address);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const listen = () => {
    const fd = listenUnix(path, LISTEN_BACKLOG);
    chmodSync(path, 0o600);
    return fd;
  };
  try {
    return listen();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw new Error(`create new shim socket: ${(err as Error).message}`);
  }
  if (await canConnect(path)) return null;
  // A stale socket left by a shim that died: take the name over.
  rmSync(path, { force: true });
  return listen();
}

/** stdin carries the marshalled task options Any (possibly nothing; never a terminal). */
function readStdin(): Buffer {
  if (isatty(0)) return Buffer.alloc(0);
  try {
    return readFileSync(0);
  } catch {
    return Buffer.alloc(0);
  }
}

function openLogFifo(bundle: string): number | 'ignore' {
  try {
    // The daemon holds the FIFO open for reading, so a non-blocking open for writing succeeds;
    // O_NONBLOCK also keeps a stalled reader from ever blocking the shim's log writes.
    return openSync(join(bundle, 'log'), constants.O_WRONLY | constants.O_NONBLOCK);
  } catch {
    return 'ignore';
  }
}

/** Moves `pid` into the cgroup named by the runc option shim_cgroup. */
function joinCgroup(pid: number, cgroup: string): void {
  const unified = (() => {
    try {
      return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => / \/sys\/fs\/cgroup .* - cgroup2 /.test(l));
    } catch {
      return false;
    }
  })();
  if (unified) {
    writeFileSync(join('/sys/fs/cgroup', cgroup, 'cgroup.procs'), String(pid));
    return;
  }
  let joined = false;
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const m = / (\S+) \S+ - cgroup /.exec(line);
    if (!m) continue;
    try {
      writeFileSync(join(m[1]!, cgroup, 'cgroup.procs'), String(pid));
      joined = true;
    } catch { /* this hierarchy has no such cgroup */ }
  }
  if (!joined) throw new Error(`failed to load cgroup ${cgroup}`);
}

/** oom_score_adj of the shim = the daemon's + 1 (capped), so the daemon is never killed first. */
function adjustOomScore(pid: number): void {
  const parent = Number(readFileSync(`/proc/${process.ppid}/oom_score_adj`, 'utf8').trim());
  const score = Math.min(parent + 1, 1000);
  writeFileSync(`/proc/${pid}/oom_score_adj`, String(score));
}

export async function startAction(flags: ShimFlags): Promise<string> {
  if (!flags.id) throw new Error('shim id cannot be empty');
  const bundle = process.cwd();
  const group = shimGroup(flags.id, join(bundle, 'config.json'));
  const address = socketAddress(flags.address, flags.namespace, group);

  const listener = await bindSocket(address);
  if (listener === null) {
    writeAtomic(bundle, 'address', address);
    return address;
  }
  let child: ReturnType<typeof spawn> | undefined;
  try {
    writeAtomic(bundle, 'address', address);
    const log = openLogFifo(bundle);
    const script = process.argv[1];
    if (!script) throw new Error('cannot find the shim program to re-execute');
    try {
      // The start action's own Node flags, and no V8 flags of the shim's: those would cost every
      // built-in module its code cache (core/sys/v8flags.ts); the serving shim sets its own
      // once it is up (cmd/launcher.ts, PROGRAM_V8_FLAGS).
      child = spawn(process.execPath, [...process.execArgv, script, ...serveArgs(flags)], {
        cwd: bundle,
        detached: true,
        stdio: ['ignore', 'ignore', log, listener],
        env: process.env,
      });
    } finally {
      if (typeof log === 'number') closeSync(log);
    }
    const pid = child.pid;
    if (pid === undefined) {
      const failure = await new Promise<Error>((resolve) => child!.once('error', resolve));
      throw new Error(`failed to start shim: ${failure.message}`);
    }
    child.unref();

    const stdin = readStdin();
    if (stdin.length > 0) {
      const options = decodeOptions(Any.decode(stdin));
      if (options.shimCgroup) joinCgroup(pid, options.shimCgroup);
    }
    try {
      adjustOomScore(pid);
    } catch (err) {
      throw new Error(`failed to adjust OOM score for shim: ${(err as Error).message}`);
    }
    return address;
  } catch (err) {
    child?.kill('SIGKILL');
    rmSync(socketPath(address), { force: true });
    throw err;
  } finally {
    closeFd(listener);
  }
}
