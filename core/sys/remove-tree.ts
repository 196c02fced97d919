/**
 * Synchronous `rm -rf` for the small trees the daemon removes on its request paths (task
 * bundles, a container's writable layer). Node's own rmSync lstat()s every entry and tries
 * rmdir() on files first; this walks each directory once with the types getdents reports,
 * so a file costs one unlink and a directory an open, a read and an rmdir. Symbolic links
 * are removed, never followed. Nothing here checks for mount points: callers unmount first
 * or make sure nothing is mounted below.
 */
import { readdirSync, renameSync, rmdirSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

const code = (err: unknown) => (err as NodeJS.ErrnoException).code;

/** Removes `path` and everything below it; a missing `path` is not an error. */
export function removeTreeSync(path: string): void {
  let entries;
  try {
    entries = readdirSync(path, { withFileTypes: true });
  } catch (err) {
    if (code(err) === 'ENOENT') return;
    if (code(err) === 'ENOTDIR') return removeFile(path);
    throw err;
  }
  for (const e of entries) {
    const child = join(path, e.name);
    if (e.isDirectory()) removeTreeSync(child);
    else removeFile(child);
  }
  try {
    rmdirSync(path);
  } catch (err) {
    if (code(err) !== 'ENOENT') throw err;
  }
}

/**
 * Renames `path` to a dot-name beside it, then removes it: a crash in the middle never leaves
 * a half-removed directory under its live name (task bundles are found by name at boot).
 * A missing `path` is not an error.
 */
export function removeTreeHiddenFirstSync(path: string): void {
  const hidden = join(dirname(path), `.${basename(path)}`);
  try {
    renameSync(path, hidden);
  } catch (err) {
    if (code(err) === 'ENOENT') return;
    throw err;
  }
  removeTreeSync(hidden);
}

function removeFile(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    // A file system that reports no entry types (DT_UNKNOWN) lists directories as files.
    if (code(err) === 'EISDIR') return removeTreeSync(path);
    if (code(err) !== 'ENOENT') throw err;
  }
}
