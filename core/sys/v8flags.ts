/**
 * V8 flags a program sets while it runs (`node bin/<program>.js` leaves no room for
 * command-line flags), remembered so they can be set again.
 *
 * Any flag set at run time costs every Node built-in module loaded afterwards its code cache:
 * V8 accepts a cache only under the flags it was made with, and Node's embedded one was made
 * under the defaults (measured: fs/promises, child_process, net and cluster load in 1.4 ms
 * before a flag change and 5.3 ms after it). A daemon loads some 60 of them while it boots,
 * so the launcher only records a program's flags (deferRuntimeV8Flags) and the program sets
 * them once it is up (applyDeferredV8Flags). The same check covers the launcher's own cache
 * of the program's bundle, which it writes before the first flag changes
 * (onFirstV8FlagChange).
 *
 * Creating a worker thread's isolate puts some process-wide V8 flags set at run time back to
 * their defaults (observed: after the daemon's first worker, --semi-space-growth-factor no
 * longer held and the main thread's young generation grew to 32 MiB for good; flags such as
 * --expose-gc were unaffected). Whoever starts a worker calls reapplyRuntimeV8Flags() once it
 * is online.
 */
import { setFlagsFromString } from 'node:v8';

// On `process`, under registered symbols: the launcher and the program are separate bundles.
const APPLIED = Symbol.for('berth.runtimeV8Flags');
const DEFERRED = Symbol.for('berth.deferredV8Flags');
const BEFORE_CHANGE = Symbol.for('berth.beforeV8FlagChange');

type WithFlags = NodeJS.Process & {
  [APPLIED]?: string[];
  [DEFERRED]?: string[];
  [BEFORE_CHANGE]?: () => void;
};

/** Sets each flag now and remembers it. */
export function applyRuntimeV8Flags(flags: readonly string[]): void {
  const proc = process as WithFlags;
  if (flags.length === 0) return;
  const before = proc[BEFORE_CHANGE];
  proc[BEFORE_CHANGE] = undefined;
  before?.();
  for (const flag of flags) setFlagsFromString(flag);
  proc[APPLIED] = [...(proc[APPLIED] ?? []), ...flags];
}

/** Records flags for applyDeferredV8Flags (the launcher, for the program it runs). */
export function deferRuntimeV8Flags(flags: readonly string[]): void {
  const proc = process as WithFlags;
  proc[DEFERRED] = [...(proc[DEFERRED] ?? []), ...flags];
}

/**
 * How long after a program is up its deferred flags wait: the launcher writes a missing code
 * cache just before the first flag changes, and one made after the first requests also
 * covers the code that serves them (the build's warm-up sends one; a shim's first container
 * is created and started within this time).
 */
const DEFERRED_FLAGS_DELAY_MS = 1500;

/** Sets the deferred flags a little later (DEFERRED_FLAGS_DELAY_MS), without keeping the process alive. */
export function applyDeferredV8FlagsSoon(): void {
  setTimeout(applyDeferredV8Flags, DEFERRED_FLAGS_DELAY_MS).unref();
}

/** Sets the flags deferRuntimeV8Flags recorded; a program calls it once it has started. */
export function applyDeferredV8Flags(): void {
  const proc = process as WithFlags;
  const flags = proc[DEFERRED] ?? [];
  proc[DEFERRED] = undefined;
  applyRuntimeV8Flags(flags);
}

/** Runs `fn` once, just before the process's first run-time flag change. */
export function onFirstV8FlagChange(fn: () => void): void {
  (process as WithFlags)[BEFORE_CHANGE] = fn;
}

/** Sets every remembered flag again (after starting a worker thread). */
export function reapplyRuntimeV8Flags(): void {
  for (const flag of (process as WithFlags)[APPLIED] ?? []) setFlagsFromString(flag);
}
