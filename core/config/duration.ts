/**
 * Go-style duration strings ("100ms", "1h30m", "0s"), the form containerd's config uses
 * for timeouts and gc delays.
 */
import { InvalidArgumentError } from '../errdefs/errdefs.js';

// Microseconds are also spelt with the micro sign (U+00B5) or the Greek mu (U+03BC), as Go
// accepts. Escaped: the bundles are kept ASCII (scripts/build.mjs), and esbuild leaves a regular
// expression literal's characters as they are.
const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, '\u00b5s': 1e-3, '\u03bcs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses a Go duration into milliseconds; `where` names the config key in errors. */
export function parseDuration(text: string, where = 'duration'): number {
  const s = text.trim();
  if (s === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)/gy;
  let total = 0;
  let pos = 0;
  let sign = 1;
  if (s.startsWith('-')) { sign = -1; pos = 1; }
  re.lastIndex = pos;
  let m: RegExpExecArray | null;
  let matched = false;
  while ((m = re.exec(s))) {
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    pos = re.lastIndex;
    matched = true;
  }
  if (!matched || pos !== s.length) {
    throw new InvalidArgumentError(`${where}: expected a duration like "100ms" or "1h30m", got ${JSON.stringify(text)}`);
  }
  return sign * total;
}

/** Formats milliseconds as a Go duration string. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
