/**
 * Keeps the daemon's resident memory close to what it really uses: once a burst of work (a
 * pull, an ingest, many tasks) is over, the native memory it freed is handed back to the
 * kernel (malloc_trim), instead of staying resident in malloc's arenas until the next burst.
 *
 * A timer (unref'd: it never keeps the process alive) samples the anonymous resident memory
 * (file pages are the release's business, below). When it has grown by more than
 * `growthBytes` since the last trim and stopped growing, the burst is
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
import { runInNewContext } from 'node:vm';
import { releaseCleanFilePages, trimMalloc } from '../sys/malloc.js';
import { applyRuntimeV8Flags } from '../sys/v8flags.js';
import { monotonicMs } from '../sys/monotonic.js';

/** V8's full collection, made callable the way --expose-gc does (undefined if V8 refuses). */
let fullGc: (() => void) | null | undefined;
function collectGarbage(): void {
  if (fullGc === undefined) {
    try {
      applyRuntimeV8Flags(['--expose-gc']);
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

/**
 * Resident bytes of this process: anonymous (heap, malloc, stacks: what a trim can return)
 * and file-backed (code and data of the binary and libraries: what a release unmaps). Where
 * /proc is unavailable, everything counts as anonymous.
 */
function residentBytes(): { anon: number; file: number } {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const kb = (field: RegExp) => Number(field.exec(status)?.[1] ?? NaN) * 1024;
    const anon = kb(/^RssAnon:\s+(\d+) kB/m);
    const file = kb(/^RssFile:\s+(\d+) kB/m);
    if (Number.isFinite(anon) && Number.isFinite(file)) return { anon, file };
  } catch { /* no /proc */ }
  return { anon: process.memoryUsage.rss(), file: 0 };
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

export interface TrimPolicyLimits extends TrimLimits {
  /** Shortest time between two releases of file pages that are not part of a trim (ms). */
  releaseEveryMs: number;
}

/** One sample of the process: resident anonymous and file-backed bytes, and when (ms). */
export interface MemorySample {
  anon: number;
  file: number;
  now: number;
}

/**
 * The trimmer's decisions, apart from its side effects (collections, malloc_trim, madvise) so
 * that sequences of samples can be tested. Decisions are on anonymous memory: file pages are
 * the release's business, and the ones in use fault back in with the next requests, which
 * must not count as growth.
 */
export class TrimPolicy {
  /** Anonymous memory after the last trim at a quiet moment: what the process needs. 0 makes
   * the first settled sample after start-up trim. */
  private baseline = 0;
  private previous: number;
  private trimmedAt = Number.NEGATIVE_INFINITY;
  private trimWasSettled = false;
  /** File pages resident right after the last release, and when that was. */
  private releasedFiles = 0;
  private releasedAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly limits: TrimPolicyLimits, initialAnon: number) {
    this.previous = initialAnon;
  }

  decide(s: MemorySample): 'trim' | 'release' | 'none' {
    // Memory let go since (a worker thread that exited, a cache that shrank) lowers what
    // counts as needed; otherwise a baseline taken while it was held would hide later growth.
    if (this.baseline > 0 && s.anon < this.baseline) this.baseline = s.anon;
    const settled = isSettled(s.anon, this.previous);
    const due = trimDue(s.anon, this.previous, this.baseline, s.now - this.trimmedAt, this.limits);
    this.previous = s.anon;
    if (due) {
      this.trimmedAt = s.now;
      this.trimWasSettled = settled;
      return 'trim';
    }
    // Code paths that ran since (each request faults some back in) are let go now and then,
    // not every quiet second: faulting them in again costs a few milliseconds.
    if (settled && s.now - this.releasedAt >= this.limits.releaseEveryMs && s.file - this.releasedFiles >= this.limits.growth) return 'release';
    return 'none';
  }

  /** A trim ran; `anon` is what it left. Only a quiet moment says what the process needs: a
   * trim in the middle of a burst keeps the last quiet baseline, or the burst's own buffers (in
   * use at that moment) would set it, and what they leave behind would never be trimmed. */
  trimmed(anon: number): void {
    this.previous = anon;
    if (this.trimWasSettled) this.baseline = anon;
  }

  released(s: MemorySample): void {
    this.releasedFiles = s.file;
    this.releasedAt = s.now;
  }
}

export function startMemoryTrimmer(opts: TrimmerOptions): void {
  const policy = new TrimPolicy({
    growth: opts.growthBytes ?? 4 << 20,
    busyGrowth: opts.busyGrowthBytes ?? 32 << 20,
    busyTrimEveryMs: opts.busyTrimEveryMs ?? 5_000,
    releaseEveryMs: opts.releaseEveryMs ?? 10_000,
  }, residentBytes().anon);
  const sample = (): MemorySample => ({ ...residentBytes(), now: monotonicMs() });
  const release = () => {
    releaseFilePages();
    policy.released(sample());
  };
  const timer = setInterval(() => {
    const action = policy.decide(sample());
    if (action === 'trim') {
      collectGarbage();
      trimMalloc();
      policy.trimmed(residentBytes().anon);
      release();
    } else if (action === 'release') {
      release();
    }
  }, opts.intervalMs ?? 1000);
  timer.unref();
  opts.signal.addEventListener('abort', () => clearInterval(timer), { once: true });
}
