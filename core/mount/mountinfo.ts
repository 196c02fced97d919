/**
 * /proc/<pid>/mountinfo reader. It is the only complete, namespace-correct view of the mount
 * table (bind mounts of the same filesystem are indistinguishable by st_dev, so stat-based
 * "is this a mount point" checks are wrong for exactly the mounts berth makes).
 */
import { readFileSync, realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { InvalidArgumentError, NotFoundError } from '../errdefs/errdefs.js';

/** One mountinfo line (see proc(5)); paths are unescaped. */
export interface MountInfo {
  id: number;
  parent: number;
  major: number;
  minor: number;
  /** Path inside the source filesystem that is mounted here ("/" unless a bind of a subdirectory). */
  root: string;
  mountpoint: string;
  /** Per-mount options, e.g. "rw,nosuid,relatime". */
  options: string;
  /** Optional fields such as "shared:1 master:2" (space separated, may be empty). */
  optional: string;
  fstype: string;
  source: string;
  /** Per-superblock options, e.g. "rw,lowerdir=…,upperdir=…". */
  vfsOptions: string;
}

/**
 * Decodes the kernel's octal escapes (space → \040, tab → \011, newline → \012, backslash → \134).
 * Escapes stand for raw bytes, so multi-byte UTF-8 names round-trip.
 */
export function unescapeMountField(field: string): string {
  if (!field.includes('\\')) return field;
  const bytes: Buffer[] = [];
  let plainStart = 0;
  const escape = /\\([0-7]{3})/g;
  for (let m = escape.exec(field); m; m = escape.exec(field)) {
    bytes.push(Buffer.from(field.slice(plainStart, m.index)), Buffer.from([parseInt(m[1], 8) & 0xff]));
    plainStart = m.index + m[0].length;
  }
  bytes.push(Buffer.from(field.slice(plainStart)));
  return Buffer.concat(bytes).toString('utf8');
}

export function parseMountInfoLine(line: string): MountInfo {
  const fields = line.split(' ');
  const sep = fields.indexOf('-', 6);
  if (fields.length < 10 || sep === -1 || fields.length < sep + 4) {
    throw new InvalidArgumentError(`malformed mountinfo line ${JSON.stringify(line)}`);
  }
  const [major, minor] = fields[2].split(':').map(Number);
  return {
    id: Number(fields[0]),
    parent: Number(fields[1]),
    major,
    minor,
    root: unescapeMountField(fields[3]),
    mountpoint: unescapeMountField(fields[4]),
    options: fields[5],
    optional: fields.slice(6, sep).join(' '),
    fstype: unescapeMountField(fields[sep + 1]),
    source: unescapeMountField(fields[sep + 2]),
    // Super options never contain a raw space, but join defensively rather than truncate.
    vfsOptions: fields.slice(sep + 3).join(' '),
  };
}

export function parseMountInfo(text: string): MountInfo[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map(parseMountInfoLine);
}

/**
 * The mount table as seen by `pid` (default: this process). Read synchronously: the kernel
 * renders the table in memory, so the read never waits on a disk, and an asynchronous read
 * would be four thread-pool round trips (open, stat, read, close), each costing more CPU
 * than the read itself. Task deletion and snapshot cleanup consult it every time.
 */
export async function mountInfo(pid: number | 'self' = 'self'): Promise<MountInfo[]> {
  return parseMountInfo(readFileSync(`/proc/${pid}/mountinfo`, 'utf8'));
}

/** realpath(3) in one call (mount points are resolved paths); no disk I/O on a warm cache. */
export const resolvedPath = (path: string): string => realpathSync.native(path);

/** Absolute path with symlinks resolved when it exists (mountinfo lists resolved paths). */
export function canonicalPath(path: string): string {
  try {
    return resolvedPath(path);
  } catch {
    return resolve(path);
  }
}

function contains(mountpoint: string, path: string): boolean {
  return mountpoint === '/' || path === mountpoint || path.startsWith(mountpoint + '/');
}

/**
 * The mount that `path` lives on: the one with the longest mountpoint containing it. Among
 * mounts stacked on the same mountpoint the last (topmost, the visible one) wins.
 */
export async function lookupMount(path: string, mounts?: readonly MountInfo[]): Promise<MountInfo> {
  const target = canonicalPath(path);
  let best: MountInfo | undefined;
  for (const m of mounts ?? (await mountInfo())) {
    if (contains(m.mountpoint, target) && (!best || m.mountpoint.length >= best.mountpoint.length)) best = m;
  }
  if (!best) throw new NotFoundError(`mount info for ${JSON.stringify(path)}`);
  return best;
}

/** Whether something is mounted exactly at `path` (false when `path` does not exist). */
export async function isMountPoint(path: string): Promise<boolean> {
  let target: string;
  try {
    target = resolvedPath(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  return (await mountInfo()).some((m) => m.mountpoint === target);
}

/** Filesystem type ("ext4", "overlay", ...) of the mount containing `path`. */
export async function fsTypeOf(path: string): Promise<string> {
  return (await lookupMount(path)).fstype;
}
