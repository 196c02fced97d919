/**
 * Runs one of berth's programs (berthd, berth, the shim) from its CommonJS bundle with a V8
 * code cache, which Node 20 does not offer for modules on its own.
 *
 * Start-up of a Node program is dominated by parsing and compiling its JavaScript: every
 * function that runs has to be compiled to bytecode first. The code cache is V8's serialised
 * bytecode of a script as it stood after a run (so including the functions that were compiled
 * lazily while it ran); compiling with it skips that work. The bundle is loaded as a classic
 * script through `vm.Script` with `cachedData`, wrapped like Node wraps a CommonJS module.
 *
 * The cache lives next to the bundle, in `dist/cache/`, named after the bundle's content hash
 * (fixed at build time), the Node version and the V8 flags in force, and per program variant
 * (the shim's `start` and its resident server run different code). It is written by the first
 * run that found none (or whose cache V8 rejected): at exit, or a moment after start for a
 * resident process. It is written atomically; a read-only installation simply runs without
 * one. The build runs each program once to create it.
 */
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import vm from 'node:vm';
import { takeDeferredExtraCa } from '../core/sys/extra-ca.js';
import { takeSigusr1 } from '../core/sys/sigusr1.js';
import { deferRuntimeV8Flags, onFirstV8FlagChange } from '../core/sys/v8flags.js';

export interface LaunchOptions {
  /** The bundle's name in dist/: `<name>.cjs`. */
  name: string;
  /** Content hash of the bundle, written into the launcher stub by the build. */
  buildId: string;
  /** Selects a separate cache for runs that execute different code (e.g. a sub-command). */
  variant?: string;
}

/**
 * Per-program V8 flags, set by the program once it has started (applyDeferredV8Flags: a flag
 * set earlier would cost every built-in module loaded after it its code cache,
 * core/sys/v8flags.ts). Only flags V8 reads while running take effect this way (heap sizes
 * are fixed when the isolate is created, and some flags, --single-threaded-gc for one, crash
 * V8 when changed later), because `node bin/berthd.js` leaves no room for command-line flags.
 */
const PROGRAM_V8_FLAGS: Record<string, readonly string[]> = {
  // The daemon is long-lived: keep V8's young generation at its initial 1 MiB semi-spaces
  // instead of letting it grow to 16 MiB each (32 MiB resident for good after any burst of
  // allocation). Scavenges get more frequent but stay cheap, since they cost what survives,
  // not the space; pull, ingest and run were measured no slower. (--max-semi-space-size is
  // the usual knob, but it only works on the command line.)
  // --heap-growing-percent: V8 counts Buffer memory allocated since the last full collection
  // against the limit it derives from the old generation's, and with the daemon's small heap
  // (~10 MiB) the default growth left a few MiB of slack: a 256 MiB ingest (each 1 MiB
  // message is socket read buffers plus its reassembled copy) ran ~25 full collections with
  // their incremental marking, a quarter of the main thread's time. An 11x limit leaves room
  // for a burst's buffers, which die young and go with the scavenges (0-1 full collections
  // per ingest instead, ingests ~25% faster, the same peak RSS); the trimmer's collection
  // after the burst still returns the memory.
  // --interrupt-budget (8x V8's default): how much a function must run before V8 considers
  // optimising it with TurboFan. A request runs a long tail of functions a few times each;
  // at the default budget the daemon kept compiling them through its first hundreds of
  // containers, TurboFan's threads taking a fifth of its CPU during `run`. Code that really
  // is hot (per-call gRPC code, an ingest's or a pull's per-chunk code) still gets there:
  // after ~10,000 calls a unary call costs the same CPU as at the default, and ingest and
  // pull measured no slower. (At 32x, per-call code was still unoptimised after 10,000
  // calls and cost 25% more.) Daemon CPU over its first 45 containers: -10%.
  // (--expose-gc is not among them: core/server/memory.ts sets it when it first collects.)
  berthd: ['--semi-space-growth-factor=1', '--heap-growing-percent=1000', '--interrupt-budget=540672'],
  // The shim idles for its container's whole life, so memory beats throughput: no growth of
  // the young generation past its initial 1 MiB, no optimising compiler, size before speed.
  // (It used to run with --lite-mode and --max-semi-space-size=1 on its command line, which
  // cost it the built-ins' code cache: an idle shim measured 17.4 MiB PSS that way, 14.7 so.)
  'containerd-shim-berth-v2': ['--semi-space-growth-factor=1', '--no-opt', '--optimize-for-size'],
};

/** Milliseconds after start at which a still-running process writes its cache. */
const RESIDENT_WRITE_DELAY_MS = 1500;

/** FNV-1a over a string, as 8 hex digits: cheap, and only has to tell flag sets apart. */
function shortHash(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}

function readIfPresent(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch {
    return undefined;
  }
}

function writeAtomically(path: string, data: Buffer): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    mkdirSync(dirname(path), { recursive: true });
    const fd = openSync(tmp, 'w', 0o644);
    try {
      writeSync(fd, data);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch {
    // A read-only installation runs without a cache.
    try { unlinkSync(tmp); } catch { /* never created */ }
  }
}

/**
 * Loads and runs `<dir>/<name>.cjs` (`dir`: dist/, where the stub calling this lives).
 * Synchronous: the program's own top-level code has run when it returns.
 */
export function launch(dir: string, opts: LaunchOptions): void {
  // Before the bundle loads: until a listener exists, SIGUSR1 opens Node's inspector, and
  // the daemon and the shim run as root (core/sys/sigusr1.ts).
  takeSigusr1();
  takeDeferredExtraCa();
  deferRuntimeV8Flags(PROGRAM_V8_FLAGS[opts.name] ?? []);
  const file = join(dir, `${opts.name}.cjs`);
  // ASCII (the build checks): decoded as Latin-1, half the time of UTF-8 for 1.5 MB.
  const source = readFileSync(file).toString('latin1');
  // The flags a cache was made under must match; NODE_OPTIONS and execArgv can change them,
  // and so does any flag set at run time: the cache is written before the first one is.
  const flags = shortHash(`${process.execArgv.join(' ')}\0${process.env.NODE_OPTIONS ?? ''}\0${process.arch}`);
  const variant = opts.variant ? `-${opts.variant}` : '';
  const cacheFile = join(dir, 'cache', `${opts.name}${variant}-${opts.buildId}-${process.version}-${flags}.v8`);
  const cachedData = process.env.BERTH_CODE_CACHE === '0' ? undefined : readIfPresent(cacheFile);

  const wrapped = `(function (exports, require, module, __filename, __dirname) {${source}\n})`;
  const script = new vm.Script(wrapped, {
    filename: file,
    cachedData,
    importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
  if ((!cachedData || script.cachedDataRejected) && process.env.BERTH_CODE_CACHE !== '0') {
    let written = false;
    const write = () => {
      if (written) return;
      written = true;
      writeAtomically(cacheFile, script.createCachedData());
    };
    process.once('exit', write);
    setTimeout(write, RESIDENT_WRITE_DELAY_MS).unref();
    onFirstV8FlagChange(write);
  }
  const fn = script.runInThisContext() as (
    exports: unknown, require: NodeJS.Require, module: { exports: unknown }, filename: string, dirname: string,
  ) => void;
  const module = { exports: {} };
  fn.call(module.exports, module.exports, createRequire(file), module, file, dir);
}
