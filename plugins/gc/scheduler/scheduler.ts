/**
 * Decides when the metadata store collects garbage. Deletions (and, past a threshold,
 * mutations) schedule a collection; an explicit request (a synchronous delete) schedules one
 * and waits for it. The pause threshold bounds the share of wall time spent collecting: after
 * each run the next one is at least `average gc time / threshold - average gc time` away,
 * unless a trigger or the deletion threshold asks for one sooner.
 */
import { CanceledError } from '../../../core/errdefs/errdefs.js';
import type { Logger } from '../../../core/log/logger.js';
import type { GcScheduler, GcStats } from '../../../core/metadata/metadata.js';

export interface SchedulerOptions {
  pauseThreshold: number;
  deletionThreshold: number;
  mutationThreshold: number;
  /** Milliseconds. */
  scheduleDelay: number;
  startupDelay: number;
}

/** Runs one collection. */
export type Collector = () => Promise<GcStats>;

interface ChangeEvent {
  ts: number;
  /** A metadata mutation (false: an explicit request). */
  mutation: boolean;
  /** The mutation happened after a deletion since the last collection. */
  dirty: boolean;
}

interface Waiter {
  resolve: (s: GcStats) => void;
  reject: (e: Error) => void;
}

export class Scheduler implements GcScheduler {
  private timer: NodeJS.Timeout | undefined;
  private nextCollection: number | undefined;
  private lastCollection: number | undefined;
  private intervalMs = 1000;
  private gcTimeMs = 0;
  private collections = 0;
  private triggered = false;
  private deletions = 0;
  private mutations = 0;
  /** A deletion happened since the last collection started (containerd's dirty counter). */
  private dirty = false;
  private running: Promise<void> | undefined;
  /** Waiters for the next collection to start; ones queued during a run wait for the one after. */
  private waiters: Waiter[] = [];
  /** Events that arrived while a collection ran, replayed after it. */
  private pending: ChangeEvent[] = [];
  private stopped = false;

  constructor(private readonly collect: Collector, private readonly opts: SchedulerOptions, private readonly log?: Logger) {}

  /** Starts the startup timer. */
  start(signal?: AbortSignal): void {
    if (this.opts.startupDelay > 0) this.schedule(this.opts.startupDelay);
    signal?.addEventListener('abort', () => this.stop(), { once: true });
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const w of this.waiters.splice(0)) w.reject(new CanceledError('gc scheduler stopped'));
  }

  close(): void {
    this.stop();
  }

  /** The metadata store changed: a deletion, or any other mutation. */
  notify(kind: 'deletion' | 'mutation'): void {
    if (kind === 'deletion') this.dirty = true;
    this.event({ ts: Date.now(), mutation: true, dirty: this.dirty });
  }

  scheduleAndWait(signal?: AbortSignal): Promise<GcStats> {
    if (this.stopped) return Promise.reject(new CanceledError('gc scheduler stopped'));
    return new Promise<GcStats>((resolve, reject) => {
      const w: Waiter = { resolve, reject };
      this.waiters.push(w);
      if (signal) {
        const onAbort = () => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(new CanceledError('waiting for garbage collection: canceled'));
        };
        if (signal.aborted) return onAbort();
        signal.addEventListener('abort', onAbort, { once: true });
      }
      this.event({ ts: Date.now(), mutation: false, dirty: false });
      this.timer?.ref();
    });
  }

  /** Snapshot of the scheduler's counters (tests and debugging). */
  get state() {
    return {
      nextCollection: this.nextCollection,
      lastCollection: this.lastCollection,
      intervalMs: this.intervalMs,
      collections: this.collections,
      deletions: this.deletions,
      mutations: this.mutations,
      triggered: this.triggered,
    };
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.nextCollection = Date.now() + delayMs;
    this.timer = setTimeout(() => this.fire(), delayMs);
    // Background collections never keep the process alive; a pending waiter does.
    if (this.waiters.length === 0) this.timer.unref();
  }

  private event(e: ChangeEvent): void {
    if (this.stopped) return;
    if (this.running) {
      this.pending.push(e);
      return;
    }
    // Covered by a collection that started after it.
    if (this.lastCollection !== undefined && this.lastCollection > e.ts) return;
    if (e.dirty) this.deletions++;
    if (e.mutation) this.mutations++;
    else this.triggered = true;
    const { deletionThreshold: dt, mutationThreshold: mt, scheduleDelay } = this.opts;
    const now = Date.now();
    const due =
      this.triggered ||
      (dt > 0 && this.deletions >= dt) ||
      (this.nextCollection === undefined && ((dt === 0 && this.deletions > 0) || (mt > 0 && this.mutations >= mt)));
    if (due && (this.nextCollection === undefined || this.nextCollection > now + scheduleDelay)) this.schedule(scheduleDelay);
  }

  private fire(): void {
    this.timer = undefined;
    if (this.stopped || this.running) return;
    const { mutationThreshold: mt } = this.opts;
    // Nothing asked for and nothing deleted: look again after another interval.
    if (!this.triggered && this.lastCollection !== undefined && this.deletions === 0 && (mt === 0 || this.mutations < mt)) {
      this.schedule(this.intervalMs);
      return;
    }
    this.running = this.run().finally(() => {
      this.running = undefined;
      for (const e of this.pending.splice(0)) this.event(e);
    });
  }

  private async run(): Promise<void> {
    const waiters = this.waiters.splice(0);
    const started = Date.now();
    this.log?.debug('collecting garbage', { triggered: this.triggered, deletions: this.deletions, mutations: this.mutations, waiters: waiters.length });
    this.dirty = false;
    let stats: GcStats;
    try {
      stats = await this.collect();
    } catch (err) {
      this.log?.error('garbage collection failed', { error: String((err as Error)?.message ?? err) });
      const previousGap = this.nextCollection !== undefined && this.lastCollection !== undefined ? this.nextCollection - this.lastCollection : this.intervalMs;
      this.lastCollection = started;
      this.schedule(previousGap + 1000);
      for (const w of waiters) w.reject(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    this.log?.debug('garbage collected', { ms: +stats.ms.toFixed(3), removed: stats.removed });
    this.gcTimeMs += stats.ms;
    this.collections++;
    this.triggered = false;
    this.deletions = 0;
    this.mutations = 0;
    if (this.opts.pauseThreshold > 0) {
      const avg = this.gcTimeMs / this.collections;
      this.intervalMs = avg / this.opts.pauseThreshold - avg;
    }
    // Events stamped before this run began were covered by it.
    this.lastCollection = started;
    this.schedule(this.intervalMs);
    for (const w of waiters) w.resolve(stats);
  }
}
