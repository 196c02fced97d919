/**
 * Disk usage of a directory tree as containerd's snapshotters report it: every distinct
 * inode (hard links count once) below and including the root, with its allocated blocks
 * (st_blocks × 512), so sparse files count what they really occupy.
 */
import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Usage } from './snapshotter.js';

/**
 * Walks `root` without following symlinks. Entries that vanish during the walk are skipped
 * (an active snapshot may be in use); a missing root is an error.
 */
export function diskUsageSync(root: string, signal?: AbortSignal): Usage {
  const seen = new Set<number>();
  let size = 0;
  const visit = (path: string, isRoot: boolean): boolean => {
    let st;
    try {
      st = lstatSync(path);
    } catch (err) {
      if (!isRoot && (err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    // One tree lives on one device (mount points are not crossed by snapshot dirs), so the
    // inode number alone identifies a file.
    if (!seen.has(st.ino)) {
      seen.add(st.ino);
      size += st.blocks * 512;
    }
    return st.isDirectory();
  };
  const stack: string[] = [];
  if (visit(root, true)) stack.push(root);
  while (stack.length) {
    signal?.throwIfAborted();
    const dir = stack.pop()!;
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    for (const name of names) {
      const p = join(dir, name);
      if (visit(p, false)) stack.push(p);
    }
  }
  return { size, inodes: seen.size };
}

export async function diskUsage(root: string, signal?: AbortSignal): Promise<Usage> {
  return diskUsageSync(root, signal);
}
