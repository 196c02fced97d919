/**
 * Keeps the daemon's resident memory close to what it really uses: once a burst of work (a
 * pull, an ingest, many tasks) is over, the native memory it freed is handed back to the
 * kernel (malloc_trim), instead of staying resident in malloc's arenas until the next burst.
 *
 * A timer (unref'd: it never keeps the process alive) samples the resident set size. When it
 * has grown by more than `growthBytes` since the last trim and stopped growing, the burst is
 * taken as over: a full garbage collection runs first (a Buffer's memory is malloc'd and only
 * freed when V8 collects the Buffer, which an idle daemon may not do for a long time), then
 * malloc is trimmed; the size after that is the new baseline, so memory that is really in use
 * (V8's heap, caches) does not trigger it again. The same moment unmaps the clean file pages
 * (the node binary's code and data, shared libraries) that start-up or the burst touched; the
 * ones still in use come back as minor faults. The first quiet moment after start counts as
 * the end of a burst: start-up itself maps ~40 MiB of the node binary.
 */
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { releaseCleanFilePages, trimMalloc } from '../sys/malloc.js';

/** V8's full collection, made callable the way --expose-gc does (undefined if V8 refuses). */
let fullGc: (() => void) | null | undefined;
function collectGarbage(): void {
  if (fullGc === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      fullGc = runInNewContext('gc') as () => void;
    } catch {
      fullGc = null;
    }
  }
  fullGc?.();
}

export interface TrimmerOptions {
  signal: AbortSignal;
  /** Sampling period (ms). */
  intervalMs?: number;
  /** Growth over the baseline that makes a trim worth its cost (about a millisecond). */
  growthBytes?: number;
}

export function startMemoryTrimmer(opts: TrimmerOptions): void {
  const growth = opts.growthBytes ?? 4 << 20;
  // 0: the first settled sample after start-up trims.
  let baseline = 0;
  let previous = process.memoryUsage.rss();
  const timer = setInterval(() => {
    const rss = process.memoryUsage.rss();
    const settled = rss <= previous + (1 << 20);
    previous = rss;
    if (rss < baseline) baseline = rss;
    if (!settled || rss - baseline < growth) return;
    collectGarbage();
    trimMalloc();
    releaseCleanFilePages(() => readFileSync('/proc/self/smaps', 'utf8'));
    baseline = previous = process.memoryUsage.rss();
  }, opts.intervalMs ?? 1000);
  timer.unref();
  opts.signal.addEventListener('abort', () => clearInterval(timer), { once: true });
}
