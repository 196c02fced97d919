/**
 * Transfer progress: a tracker that pull/push update as they go, and a renderer producing ctr's
 * progress table (ref, status, bar, bytes, then "elapsed … total … (…/s)"), either redrawn in
 * place on a terminal or printed once as plain lines.
 */
import { refKey, type Descriptor } from '../../core/images/images.js';

export type JobStatus = 'resolving' | 'resolved' | 'waiting' | 'downloading' | 'uploading' | 'committing' | 'done' | 'exists' | 'mounted';

export interface Job {
  key: string;
  desc?: Descriptor;
  status: JobStatus;
  offset: number;
  total: number;
  startedAt?: number;
  updatedAt?: number;
}

/** Live state of one transfer; cheap to update from hot loops (no events). */
export class ProgressTracker {
  readonly start = Date.now();
  readonly jobs = new Map<string, Job>();
  private readonly order: string[] = [];

  /** `initial` null: no line for the reference itself (push shows only blobs). */
  constructor(readonly name: string, initial: JobStatus | null = 'resolving') {
    if (initial) this.set(name, { status: initial });
  }

  /** Adds a descriptor's job (ctr's ref key) once; returns it. */
  add(desc: Descriptor, status: JobStatus = 'waiting'): Job {
    const key = refKey(desc);
    const existing = this.jobs.get(key);
    if (existing) return existing;
    return this.set(key, { desc, status, total: desc.size });
  }

  set(key: string, patch: Partial<Job>): Job {
    let job = this.jobs.get(key);
    if (!job) {
      job = { key, status: 'waiting', offset: 0, total: 0 };
      this.jobs.set(key, job);
      this.order.push(key);
    }
    Object.assign(job, patch);
    job.updatedAt = Date.now();
    return job;
  }

  list(): Job[] {
    return this.order.map((k) => this.jobs.get(k)!);
  }
}

/** ctr's progress.Bytes: "%02.1f %s" over 1024-based units. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB', 'ZiB', 'YiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1).padStart(2, '0')} ${units[i]}`;
}

/** Go's time.Duration.String() for a duration in milliseconds ("71.282ms", "1.234567s", "2m3.5s"). */
export function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  const ns = Math.round(ms * 1e6);
  if (ns < 1000) return `${ns}ns`;
  if (ns < 1e6) return `${trimZeros((ns / 1e3).toFixed(3))}µs`;
  if (ns < 1e9) return `${trimZeros((ns / 1e6).toFixed(6))}ms`;
  let s = ns / 1e9;
  let out = '';
  const h = Math.floor(s / 3600);
  if (h) {
    out += `${h}h`;
    s -= h * 3600;
  }
  const m = Math.floor(s / 60);
  if (h || m) {
    out += `${m}m`;
    s -= m * 60;
  }
  return `${out}${trimZeros(s.toFixed(9))}s`;
}

const trimZeros = (s: string) => (s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s);

const GREEN = '\x1b[32m';
const RESET = '\x1b[0m';

/** ctr's progress bar: `|+++---|` of `width` columns (colour codes only when `color`). */
export function bar(fraction: number, width = 40, color = true): string {
  const f = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
  const inner = width - 2;
  const positive = Math.floor(inner * f);
  const plus = '+'.repeat(positive);
  return `|${color ? `${GREEN}${plus}${RESET}` : plus}${'-'.repeat(inner - positive)}|`;
}

/**
 * Lays out cells like Go's tabwriter (minwidth 1, padding 1) for rows whose every cell is
 * tab-terminated; with `padLast` false the last cell of each row is not padded (a row ending
 * in "\n" rather than "\t\n").
 */
export function tabulate(lines: string[][], padLast = true): string {
  const widths: number[] = [];
  const visible = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '').length;
  for (const cells of lines) cells.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 1, visible(c))));
  return lines
    .map((cells) => cells.map((c, i) => (i === cells.length - 1 && !padLast ? c : c + ' '.repeat((widths[i] ?? 0) - visible(c) + 1))).join(''))
    .join('\n') + '\n';
}

/** The rows ctr's Display prints for the jobs, plus its elapsed/total line. */
export function renderTable(tracker: ProgressTracker, color = true, now = Date.now()): string {
  const rows: string[][] = [];
  let total = 0;
  for (const j of tracker.list()) {
    total += j.status === 'done' || j.status === 'downloading' || j.status === 'uploading' || j.status === 'committing' ? j.offset : 0;
    switch (j.status) {
      case 'downloading':
      case 'uploading':
        rows.push([`${j.key}:`, j.status, bar(j.total > 0 ? j.offset / j.total : 0, 40, color), `${formatBytes(j.offset).slice(0, 8).padStart(8)}/${formatBytes(j.total)}`]);
        break;
      case 'resolving':
      case 'waiting':
        rows.push([`${j.key}:`, j.status, bar(0, 40, color)]);
        break;
      default:
        rows.push([`${j.key}:`, j.status, bar(1, 40, color)]);
    }
  }
  const secs = Math.max(0.001, (now - tracker.start) / 1000);
  rows.push([`elapsed: ${secs.toFixed(1).padEnd(4)}s`, `total: ${formatBytes(total).slice(0, 6).padStart(7)}`, `(${formatBytes(Math.floor(total / secs))}/s)`]);
  return tabulate(rows);
}

/**
 * Shows a tracker while `work` runs: on a TTY the table is redrawn every 100 ms (cursor up +
 * clear line, as ctr's progress writer); otherwise it is printed once, without colours, at the end.
 */
export async function showProgress<T>(tracker: ProgressTracker, out: NodeJS.WriteStream, work: Promise<T>): Promise<T> {
  const tty = !!out.isTTY;
  let lines = 0;
  const draw = () => {
    const text = renderTable(tracker, tty);
    let clear = '';
    for (let i = 0; i < lines; i++) clear += '\x1b[1A\x1b[2K\r';
    lines = text.split('\n').length - 1;
    out.write(clear + text);
  };
  let timer: NodeJS.Timeout | undefined;
  if (tty) timer = setInterval(draw, 100);
  try {
    const res = await work;
    return res;
  } finally {
    if (timer) clearInterval(timer);
    draw();
  }
}
