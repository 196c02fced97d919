/**
 * io.containerd.gc.v1.scheduler — schedules the metadata store's garbage collection from its
 * change notices, bounded by a pause threshold. Config keys and exports are containerd's.
 */
import { parseDuration } from '../../../core/config/duration.js';
import { InvalidArgumentError } from '../../../core/errdefs/errdefs.js';
import type { GcScheduler } from '../../../core/metadata/metadata.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';

export interface GcSchedulerConfig {
  /** Largest share of wall time spent collecting (clamped to 0…0.5). */
  pause_threshold: number;
  /** Collect once this many deletions happened (0: any deletion schedules one). */
  deletion_threshold: number;
  /** Collect at the next scheduled time once this many mutations happened (0: never for mutations). */
  mutation_threshold: number;
  /** Delay before a triggered collection ("0s": immediately). */
  schedule_delay: string;
  /** Delay of the first collection after start ("0s": none). */
  startup_delay: string;
}

function requireNumber(c: Record<string, unknown>, key: string, integer: boolean): number {
  const raw = c[key];
  const v = typeof raw === 'bigint' ? Number(raw) : raw;
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
    throw new InvalidArgumentError(`${key}: expected ${integer ? 'an integer' : 'a number'}, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Go's %v of a float64: shortest form, exponent notation outside 1e-4 ≤ |x| < 1e21. */
export function goFloat(x: number): string {
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e-4 && a < 1e21) return String(x);
  const [m, e] = x.toExponential().split('e') as [string, string];
  const exp = Number(e);
  return `${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
}

/** Go's time.Duration String() for a millisecond count ("0s", "100ms", "1.5s", "1m30s", "2h0m0s"). */
export function goDuration(ms: number): string {
  const ns = Math.round(ms * 1e6);
  if (ns === 0) return '0s';
  const neg = ns < 0;
  let n = Math.abs(ns);
  const trim = (s: string) => s.replace(/\.?0+$/, '');
  let out: string;
  if (n < 1e9) {
    if (n < 1e3) out = `${n}ns`;
    else if (n < 1e6) out = `${trim((n / 1e3).toFixed(3))}µs`;
    else out = `${trim((n / 1e6).toFixed(6))}ms`;
  } else {
    const h = Math.floor(n / 3.6e12);
    n -= h * 3.6e12;
    const m = Math.floor(n / 6e10);
    n -= m * 6e10;
    const s = `${trim((n / 1e9).toFixed(9))}s`;
    out = h > 0 ? `${h}h${m}m${s}` : m > 0 ? `${m}m${s}` : s;
  }
  return neg ? `-${out}` : out;
}

export const gcSchedulerPlugin = definePlugin<GcSchedulerConfig, GcScheduler>({
  type: PluginType.GC,
  id: 'scheduler',
  requires: [PluginType.Metadata],
  config: {
    defaults: {
      pause_threshold: 0.02,
      deletion_threshold: 0,
      mutation_threshold: 100,
      schedule_delay: '0s',
      startup_delay: '100ms',
    },
    validate: (c) => {
      const r = c as unknown as Record<string, unknown>;
      requireNumber(r, 'pause_threshold', false);
      requireNumber(r, 'deletion_threshold', true);
      requireNumber(r, 'mutation_threshold', true);
      for (const key of ['schedule_delay', 'startup_delay'] as const) {
        if (typeof c[key] !== 'string') throw new InvalidArgumentError(`${key}: expected a duration string, got ${JSON.stringify(c[key])}`);
        parseDuration(c[key], key);
      }
    },
  },
  async init(ctx) {
    const metadata = await ctx.get(PluginType.Metadata);
    const { Scheduler } = await import('./scheduler.js');
    const c = ctx.config;
    // containerd clamps rather than rejects out-of-range values.
    const opts = {
      pauseThreshold: Math.min(0.5, Math.max(0, Number(c.pause_threshold))),
      deletionThreshold: Number(c.deletion_threshold),
      mutationThreshold: Math.max(0, Number(c.mutation_threshold)),
      scheduleDelay: Math.max(0, parseDuration(c.schedule_delay, 'schedule_delay')),
      startupDelay: Math.max(0, parseDuration(c.startup_delay, 'startup_delay')),
    };
    const scheduler = new Scheduler(() => metadata.collectGarbage(), opts, ctx.log);
    metadata.onChange((kind) => scheduler.notify(kind));
    ctx.meta.exports.PauseThreshold = goFloat(opts.pauseThreshold);
    ctx.meta.exports.DeletionThreshold = String(opts.deletionThreshold);
    ctx.meta.exports.MutationThreshold = String(opts.mutationThreshold);
    ctx.meta.exports.ScheduleDelay = goDuration(opts.scheduleDelay);
    scheduler.start(ctx.signal);
    return scheduler;
  },
});
