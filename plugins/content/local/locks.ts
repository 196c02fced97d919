/**
 * In-process ref locks for ingests. One writer per ref at a time: a second writer retries
 * briefly (random backoff, as containerd does) and then fails with UNAVAILABLE, which
 * clients read as "someone else is uploading this; retry later".
 */
import { UnavailableError } from '../../../core/errdefs/errdefs.js';

/** Held refs (keyed by store root and ref) with the time each was taken. */
const held = new Map<string, number>();

const keyOf = (root: string, ref: string) => `${root}\u0000${ref}`;

function describe(ms: number): string {
  if (ms < 1000) return `${ms.toFixed(3)}ms`;
  return `${(ms / 1000).toFixed(6)}s`;
}

/** Takes the lock now or throws UNAVAILABLE. */
export function tryLock(root: string, ref: string): void {
  const k = keyOf(root, ref);
  const since = held.get(k);
  if (since !== undefined) {
    throw new UnavailableError(`ref ${ref} locked for ${describe(Date.now() - since)} (since ${new Date(since).toISOString()})`);
  }
  held.set(k, Date.now());
}

/** Takes the lock, retrying up to `attempts` times with a growing random backoff. */
export async function lock(root: string, ref: string, attempts = 10): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      tryLock(root, ref);
      return;
    } catch (err) {
      if (i + 1 >= attempts) throw err;
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * (1 << i))));
    }
  }
}

export function unlock(root: string, ref: string): void {
  held.delete(keyOf(root, ref));
}

export function isLocked(root: string, ref: string): boolean {
  return held.has(keyOf(root, ref));
}
