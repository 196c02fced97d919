/**
 * Keeps the daemon's resident memory close to what it really uses: once a burst of work (a
 * pull, an ingest, many tasks) is over, the native memory it freed is handed back to the
 * kernel (malloc_trim), instead of staying resident in malloc's arenas until the next burst.
 *
 * A timer (unref'd: it never keeps the process alive) samples the resident set size. When it
 * has grown by more than `growthBytes` since the last trim and stopped growing, the burst is
 * taken as over (a much larger growth is trimmed every few seconds even while work goes on):
 * a full garbage collection runs first (a Buffer's memory is malloc'd and only
 * freed when V8 collects the Buffer, which an idle daemon may not do for a long time), then
 * malloc is trimmed; the size after that is the new baseline, so memory that is really in use
 * (V8's heap, caches) does not trigger it again. The same moment unmaps the clean file pages
 * (the node binary's code and data, shared libraries) that start-up or the burst touched; the
 * ones still in use come back as minor faults. The first quiet moment after start counts as
 * the end of a burst: start-up itself maps ~40 MiB of the node binary. File pages that work
 * brings back are let go again at most every `releaseEveryMs`.
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
  /** Shortest time between two releases of file pages that are not part of a trim (ms). */
  releaseEveryMs?: number;
  /**
   * Growth that is trimmed even while the daemon is still busy (RSS not settled), at most
   * every `busyTrimEveryMs`: a burst's leftovers (an ingest's buffers) must not stay resident
   * just because smaller work (a loop of snapshot calls) follows without a pause.
   */
  busyGrowthBytes?: number;
  busyTrimEveryMs?: number;
}

/** Resident file-backed bytes of this process (0 where /proc is unavailable). */
function residentFileBytes(): number {
  try {
    const m = /^RssFile:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

const releaseFilePages = () => releaseCleanFilePages(() => readFileSync('/proc/self/smaps', 'utf8'));

/** RSS grew by at most 1 MiB since the previous sample: whatever burst there was is over. */
const isSettled = (rss: number, previous: number) => rss <= previous + (1 << 20);

export interface TrimLimits {
  growth: number;
  busyGrowth: number;
  busyTrimEveryMs: number;
}

/**
 * Whether a sample calls for a trim: RSS has grown past the baseline, and either stopped
 * growing (at most 1 MiB since the previous sample: the burst is over), or grown so much that
 * waiting for a quiet moment would keep a burst's leftovers resident while other work goes on.
 */
export function trimDue(rss: number, previous: number, baseline: number, sinceTrimMs: number, limits: TrimLimits): boolean {
  const grown = rss - baseline;
  if (grown < limits.growth) return false;
  if (isSettled(rss, previous)) return true;
  return grown >= limits.busyGrowth && sinceTrimMs >= limits.busyTrimEveryMs;
}

export function startMemoryTrimmer(opts: TrimmerOptions): void {
  const limits: TrimLimits = {
    growth: opts.growthBytes ?? 4 << 20,
    busyGrowth: opts.busyGrowthBytes ?? 32 << 20,
    busyTrimEveryMs: opts.busyTrimEveryMs ?? 5_000,
  };
  const releaseEvery = opts.releaseEveryMs ?? 10_000;
  let trimmedAt = 0;
  // The size after the last trim, file pages still mapped: what the process needs. 0 makes the
  // first settled sample after start-up trim.
  let baseline = 0;
  let previous = process.memoryUsage.rss();
  // File pages resident right after the last release, and when that was.
  let releasedFiles = 0;
  let releasedAt = 0;
  const release = () => {
    releaseFilePages();
    releasedFiles = residentFileBytes();
    releasedAt = performance.now();
  };
  const timer = setInterval(() => {
    const rss = process.memoryUsage.rss();
    const settled = isSettled(rss, previous);
    const due = trimDue(rss, previous, baseline, performance.now() - trimmedAt, limits);
    previous = rss;
    if (due) {
      trimmedAt = performance.now();
      collectGarbage();
      trimMalloc();
      // Measured before the file pages go: the ones in use fault back in with the next
      // requests, and that must not count as growth (it would trim again every other second).
      // Only a quiet moment says what the process needs: a trim in the middle of a burst keeps
      // the last quiet baseline, or the burst's own buffers (in use at that moment) would set
      // it, and what they leave behind once the burst ends would never be trimmed.
      if (settled) baseline = process.memoryUsage.rss();
      release();
      previous = process.memoryUsage.rss();
      return;
    }
    if (!settled) return;
    // Code paths that ran since (each request faults some back in) are let go now and then,
    // not every quiet second: faulting them in again costs a few milliseconds.
    if (performance.now() - releasedAt >= releaseEvery && residentFileBytes() - releasedFiles >= limits.growth) {
      release();
      previous = process.memoryUsage.rss();
    }
  }, opts.intervalMs ?? 1000);
  timer.unref();
  opts.signal.addEventListener('abort', () => clearInterval(timer), { once: true });
}
