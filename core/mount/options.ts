/**
 * fstab-style mount options → mount(2) arguments, with containerd's semantics: each known
 * option sets or clears one flag (so later options override earlier ones, "ro,rw" is rw), and
 * anything unknown is filesystem data passed through in order ("lowerdir=…", "size=1m").
 */
import { posix } from 'node:path';
import {
  MS_BIND, MS_DIRSYNC, MS_MANDLOCK, MS_NOATIME, MS_NODEV, MS_NODIRATIME, MS_NOEXEC, MS_NOSUID,
  MS_PRIVATE, MS_RDONLY, MS_REC, MS_RELATIME, MS_REMOUNT, MS_SHARED, MS_SLAVE, MS_STRICTATIME,
  MS_SYNCHRONOUS, MS_UNBINDABLE,
} from './flags.js';

export interface ParsedMountOptions {
  /** MS_* flags for the main mount(2) call (never contains propagation flags). */
  flags: number;
  /** One propagation type (MS_PRIVATE, MS_SHARED, ...) optionally | MS_REC; 0 when none was given. */
  propagationFlags: number;
  /** Filesystem-specific options, in their original order; joined with ',' for mount(2). */
  data: string[];
  /** "loop" was given: the source is a file to attach to a loop device first. */
  loopSetup?: boolean;
}

/** [clear, flag]: `clear` options remove the flag that their counterpart sets. */
const FLAG_OPTIONS = new Map<string, [clear: boolean, flag: number]>([
  ['async', [true, MS_SYNCHRONOUS]],
  ['atime', [true, MS_NOATIME]],
  ['bind', [false, MS_BIND]],
  ['dev', [true, MS_NODEV]],
  ['diratime', [true, MS_NODIRATIME]],
  ['dirsync', [false, MS_DIRSYNC]],
  ['exec', [true, MS_NOEXEC]],
  ['mand', [false, MS_MANDLOCK]],
  ['noatime', [false, MS_NOATIME]],
  ['nodev', [false, MS_NODEV]],
  ['nodiratime', [false, MS_NODIRATIME]],
  ['noexec', [false, MS_NOEXEC]],
  ['nomand', [true, MS_MANDLOCK]],
  ['norelatime', [true, MS_RELATIME]],
  ['nostrictatime', [true, MS_STRICTATIME]],
  ['nosuid', [false, MS_NOSUID]],
  ['rbind', [false, MS_BIND | MS_REC]],
  ['relatime', [false, MS_RELATIME]],
  ['remount', [false, MS_REMOUNT]],
  ['ro', [false, MS_RDONLY]],
  ['rw', [true, MS_RDONLY]],
  ['strictatime', [false, MS_STRICTATIME]],
  ['suid', [true, MS_NOSUID]],
  ['sync', [false, MS_SYNCHRONOUS]],
]);

/**
 * Propagation options. containerd 1.6's table lacks these (they would leak into the data
 * string); berth applies them in a separate call, as mount(8) does. The kernel accepts only one
 * propagation type per call, so the last one given wins.
 */
const PROPAGATION_OPTIONS = new Map<string, number>([
  ['private', MS_PRIVATE],
  ['rprivate', MS_PRIVATE | MS_REC],
  ['shared', MS_SHARED],
  ['rshared', MS_SHARED | MS_REC],
  ['slave', MS_SLAVE],
  ['rslave', MS_SLAVE | MS_REC],
  ['unbindable', MS_UNBINDABLE],
  ['runbindable', MS_UNBINDABLE | MS_REC],
]);

export function parseMountOptions(options: readonly string[]): ParsedMountOptions {
  const parsed: ParsedMountOptions = { flags: 0, propagationFlags: 0, data: [] };
  for (const option of options) {
    const flag = FLAG_OPTIONS.get(option);
    const propagation = PROPAGATION_OPTIONS.get(option);
    if (flag) {
      const [clear, bits] = flag;
      parsed.flags = clear ? parsed.flags & ~bits : parsed.flags | bits;
    } else if (propagation !== undefined) {
      parsed.propagationFlags = propagation;
    } else if (option === 'loop') {
      parsed.loopSetup = true;
    } else if (option !== 'defaults') {
      // "defaults" means "no change"; containerd forwards it as data, which most
      // filesystems then reject, so berth drops it deliberately.
      parsed.data.push(option);
    }
  }
  return parsed;
}

/** Total byte length of the options, as containerd measures them against the page size. */
export function optionsSize(options: readonly string[]): number {
  return options.reduce((sum, o) => sum + Buffer.byteLength(o), 0);
}

const LOWERDIR = 'lowerdir=';

/**
 * Shrinks an overlay "lowerdir=" option that would overflow mount(2)'s one-page data buffer:
 * every lower directory is rewritten relative to the parent of their longest common prefix
 * (containerd's layout, …/snapshots/<id>/fs, yields "<id>/fs"), and that parent is returned as
 * `chdir` — the mount must then run with it as the working directory. Returns the options
 * unchanged (no `chdir`) when there is nothing to gain.
 */
export function compactLowerdirOption(options: readonly string[]): { chdir?: string; options: string[] } {
  const idx = options.findIndex((o) => o.startsWith(LOWERDIR));
  if (idx === -1) return { options: [...options] };
  const dirs = options[idx].slice(LOWERDIR.length).split(':');
  if (dirs.length < 2) return { options: [...options] };

  // Step up from the common prefix to a whole directory: "/s/snapshots/1" (shared by ".../1/fs"
  // and ".../10/fs") is not itself a common directory, its parent is.
  const common = parentDir(longestCommonPrefix(dirs));
  const prefix = common + '/';
  if (!common.startsWith('/') || common === '/' || !dirs.every((d) => d.startsWith(prefix))) {
    return { options: [...options] };
  }

  const relative = dirs.map((d) => d.slice(prefix.length));
  const compacted = [...options];
  compacted[idx] = LOWERDIR + relative.join(':');
  return { chdir: common, options: compacted };
}

export function longestCommonPrefix(strs: readonly string[]): string {
  if (strs.length === 0) return '';
  // The common prefix of a set equals that of its lexicographic minimum and maximum.
  let min = strs[0];
  let max = strs[0];
  for (const s of strs) {
    if (s < min) min = s;
    if (s > max) max = s;
  }
  let i = 0;
  while (i < min.length && min[i] === max[i]) i++;
  return min.slice(0, i);
}

/** Everything before the last '/', normalized (Go's path.Dir: "/a/b/" → "/a/b", "/a/b" → "/a"). */
function parentDir(p: string): string {
  const slash = p.lastIndexOf('/');
  if (slash === -1) return '.';
  const dir = posix.normalize(p.slice(0, slash + 1));
  return dir.length > 1 && dir.endsWith('/') ? dir.slice(0, -1) : dir;
}
