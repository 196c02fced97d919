/**
 * Directory creation that explains itself. `mkdirSync(…, { recursive: true })` reports a
 * path below a regular file as EEXIST or ENOTDIR on some ancestor, and a read-only file system
 * as ENOENT; the daemon's own directories and sockets are configuration, and a user needs the
 * real reason to fix it.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { goErrnoText } from './errno.js';

const isDirectory = (path: string) => {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
};

/**
 * Creates `dir` and its missing parents with `mode`. On failure throws an Error whose message
 * is the reason in plain words, naming the path at fault ("/x/file is not a directory",
 * "cannot create /ro/a: read-only file system").
 */
export function makeDirectories(dir: string, mode: number): void {
  try {
    mkdirSync(dir, { recursive: true, mode });
  } catch (err) {
    throw new Error(whyNot(dir, mode, err as NodeJS.ErrnoException), { cause: err });
  }
}

function whyNot(dir: string, mode: number, err: NodeJS.ErrnoException): string {
  // The first path on the way that is missing, or the last one if all of them exist.
  let first = dir;
  while (dirname(first) !== first && !existsSync(dirname(first))) first = dirname(first);
  if (existsSync(first)) return isDirectory(first) ? `cannot create ${dir}: ${goErrnoText(err)}` : `${first} is not a directory`;
  const parent = dirname(first);
  if (!isDirectory(parent)) return `${parent} is not a directory`;
  // A plain mkdir of that one directory names the cause a recursive one may misreport.
  try {
    mkdirSync(first, { mode });
  } catch (direct) {
    return `cannot create ${first}: ${goErrnoText(direct as NodeJS.ErrnoException)}`;
  }
  return `cannot create ${dir}: ${goErrnoText(err)}`;
}
