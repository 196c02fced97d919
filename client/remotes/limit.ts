/**
 * A concurrency limiter: `limit(n)` returns a function that runs async tasks with at most `n`
 * in flight; the rest wait in FIFO order.
 */
import { InvalidArgumentError } from '../../core/errdefs/errdefs.js';

export interface Limiter {
  <T>(task: () => T | Promise<T>): Promise<T>;
  /** Tasks running now. */
  readonly activeCount: number;
  /** Tasks waiting for a slot. */
  readonly pendingCount: number;
  /** Runs `task` for every item (at most n at once) and resolves in input order; rejects on the first failure. */
  map<I, T>(items: Iterable<I>, task: (item: I, index: number) => T | Promise<T>): Promise<T[]>;
}

export function limit(n: number): Limiter {
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`concurrency limit must be a positive integer, got ${n}`);
  let active = 0;
  const queue: (() => void)[] = [];

  const next = () => {
    if (active >= n) return;
    const start = queue.shift();
    if (start) {
      active++;
      start();
    }
  };

  const run = (<T>(task: () => T | Promise<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      queue.push(() => {
        let result: Promise<T>;
        try {
          result = Promise.resolve(task());
        } catch (err) {
          result = Promise.reject(err);
        }
        result.then(resolve, reject).finally(() => {
          active--;
          next();
        });
      });
      next();
    })) as Limiter;

  Object.defineProperties(run, {
    activeCount: { get: () => active },
    pendingCount: { get: () => queue.length },
  });
  run.map = <I, T>(items: Iterable<I>, task: (item: I, index: number) => T | Promise<T>) =>
    Promise.all(Array.from(items, (item, i) => run(() => task(item, i))));
  return run;
}
