/**
 * Renders mounts as the mount(8) command lines that would reproduce them — what
 * `ctr snapshots mounts|prepare|view` print so a user can mount a snapshot by hand.
 */
import { type Mount, mountpointOf } from './types.js';

export interface RenderOptions {
  /**
   * Shell-quote words that need it. Off by default: ctr prints the words verbatim
   * ("mount -t %s %s %s -o %s"), and berth's CLI output must match it byte for byte.
   */
  quote?: boolean;
}

/** One command line, without a trailing newline. Like ctr, "-o" is printed even with no options. */
export function mountCommandLine(m: Mount, target: string, opts: RenderOptions = {}): string {
  const q = opts.quote ? shellQuote : (s: string) => s;
  return `mount -t ${q(m.type)} ${q(m.source)} ${q(mountpointOf(m, target))} -o ${q(m.options.join(','))}`;
}

/** All mounts' command lines, each terminated by '\n' exactly as ctr writes them ('' for none). */
export function mountLookupCommand(mounts: readonly Mount[], target: string, opts: RenderOptions = {}): string {
  return mounts.map((m) => mountCommandLine(m, target, opts) + '\n').join('');
}

const SAFE_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** POSIX-shell single quoting; words made only of safe characters stay bare. */
export function shellQuote(word: string): string {
  if (SAFE_WORD.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
