/** Terminal output helpers shared by the CLI commands (ctr's tabwriter layout). */

/**
 * Lays out rows like Go's tabwriter as ctr uses it: every cell but a row's last is padded
 * to its column's widest cell plus `padding` spaces.
 */
export function table(rows: readonly (readonly string[])[], padding = 1, minWidth = 0): string {
  const widths: number[] = [];
  for (const r of rows) {
    r.slice(0, -1).forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? minWidth, cell.length)));
  }
  return rows
    .map((r) => r.map((cell, i) => (i < r.length - 1 ? cell.padEnd((widths[i] ?? 0) + padding) : cell)).join('').trimEnd())
    .join('\n') + (rows.length ? '\n' : '');
}

/** `k=v,k2=v2` with sorted keys, or `-` when empty (ctr's label column). */
export function labelString(labels: Record<string, string> | undefined, empty = '-'): string {
  const entries = Object.entries(labels ?? {}).sort(([a], [b]) => a.localeCompare(b));
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(',') : empty;
}

/** Parses `key=value` arguments into labels (a bare key sets an empty value, which removes it). */
export function parseLabelArgs(args: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of args) {
    const i = a.indexOf('=');
    if (i === 0) throw new Error(`invalid label ${JSON.stringify(a)}: expected key=value`);
    if (i < 0) out[a] = '';
    else out[a.slice(0, i)] = a.slice(i + 1);
  }
  return out;
}

/** Human-readable byte size (ctr's progress.Bytes: 1.5 MiB). */
export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1).replace(/\.?0+$/, '')} ${units[i]}`;
}

/** Relative time like ctr's units.HumanDuration ("2 minutes"). */
export function humanAge(d: Date, now = new Date()): string {
  const s = Math.max(0, (now.getTime() - d.getTime()) / 1000);
  if (s < 1) return 'Less than a second';
  if (s < 60) return `${Math.floor(s)} seconds`;
  if (s < 3600) return `${Math.floor(s / 60)} minutes`;
  if (s < 172800) return `${Math.floor(s / 3600)} hours`;
  return `${Math.floor(s / 86400)} days`;
}

/** JSON with Go-style indentation (ctr prints structs with 4-space indent). */
export const goJson = (v: unknown) => JSON.stringify(v, null, 4);
