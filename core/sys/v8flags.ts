/**
 * V8 flags a program sets while it runs (cmd/launcher.ts sets them before its bundle loads,
 * since `node bin/<program>.js` leaves no room for command-line flags), remembered so they can
 * be set again.
 *
 * Creating a worker thread's isolate puts some process-wide V8 flags set at run time back to
 * their defaults (observed: after the daemon's first worker, --semi-space-growth-factor no
 * longer held and the main thread's young generation grew to 32 MiB for good; flags such as
 * --expose-gc were unaffected). Whoever starts a worker calls reapplyRuntimeV8Flags() once it
 * is online.
 */
import { setFlagsFromString } from 'node:v8';

// On `process`, under a registered symbol: the launcher and the program are separate bundles.
const APPLIED = Symbol.for('berth.runtimeV8Flags');

type WithFlags = NodeJS.Process & { [APPLIED]?: string[] };

/** Sets each flag now and remembers it. */
export function applyRuntimeV8Flags(flags: readonly string[]): void {
  const proc = process as WithFlags;
  for (const flag of flags) setFlagsFromString(flag);
  proc[APPLIED] = [...(proc[APPLIED] ?? []), ...flags];
}

/** Sets every remembered flag again (after starting a worker thread). */
export function reapplyRuntimeV8Flags(): void {
  for (const flag of (process as WithFlags)[APPLIED] ?? []) setFlagsFromString(flag);
}
