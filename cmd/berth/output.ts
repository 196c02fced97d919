/** Terminal output helpers shared by the CLI commands (ctr's tabwriter layout). */

/**
 * Go's text/tabwriter (flags 0, pad ' '): cells ended by a tab form columns; a column block is
 * a run of consecutive lines that have a cell in that column; every cell of a block is padded
 * to the block's widest cell + `padding` (at least `minwidth`). Trailing text is not a column.
 */
export function goTabwriter(text: string, minwidth: number, padding: number): string {
  const lines = text.split('\n');
  const trailingNewline = lines[lines.length - 1] === '';
  if (trailingNewline) lines.pop();
  const cells = lines.map((l) => l.split('\t'));
  const widths = cells.map((c) => new Array<number>(Math.max(0, c.length - 1)).fill(0));
  const maxCols = Math.max(0, ...cells.map((c) => c.length - 1));
  for (let col = 0; col < maxCols; col++) {
    let i = 0;
    while (i < cells.length) {
      if (cells[i]!.length - 1 <= col) {
        i++;
        continue;
      }
      let j = i;
      let width = minwidth;
      while (j < cells.length && cells[j]!.length - 1 > col) {
        width = Math.max(width, cells[j]![col]!.length + padding);
        j++;
      }
      for (let k = i; k < j; k++) widths[k]![col] = width;
      i = j;
    }
  }
  const out = cells.map((c, li) => c.map((cell, ci) => (ci < c.length - 1 ? cell.padEnd(widths[li]![ci]!) : cell)).join(''));
  return out.join('\n') + (trailingNewline ? '\n' : '');
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

/**
 * One line on stderr as ctr's logger writes it (logrus text format): RFC 3339 time to the
 * second, level, quoted message, then an optional quoted error.
 */
export function logLine(level: 'warning' | 'error', msg: string, error?: string): void {
  const time = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  process.stderr.write(`time="${time}" level=${level} msg=${JSON.stringify(msg)}${error === undefined ? '' : ` error=${JSON.stringify(error)}`}\n`);
}
