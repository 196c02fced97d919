/** Small files of the ingest layout: `ref`, `startedat`, `updatedat`, `total`. */
import { constants as C } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { NotFoundError } from '../../../core/errdefs/errdefs.js';

/**
 * Writes through a temporary file and a rename, so readers never see half a file. Whatever is
 * left at the temporary name (a crash's leftover, or a link planted there) is removed, never
 * written through: the file is created exclusively and without following links.
 */
export async function writeSmallFile(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp`;
  await rm(tmp, { force: true });
  await writeFile(tmp, text, { mode: 0o666, flag: C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW });
  await rename(tmp, path);
}

/** RFC 3339 with fractional seconds, as Go's time.MarshalText writes it. */
export function formatTimestamp(t: Date): string {
  return t.toISOString();
}

export function parseTimestamp(text: string): Date {
  // Go writes up to nine fractional digits and a zone offset; Date keeps milliseconds.
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.exec(text.trim());
  if (!m) throw new Error(`invalid timestamp ${JSON.stringify(text)}`);
  const frac = m[2] ? m[2].slice(0, 4).padEnd(4, '0') : '';
  const d = new Date(`${m[1]}${frac}${m[3]}`);
  if (Number.isNaN(d.getTime())) throw new Error(`invalid timestamp ${JSON.stringify(text)}`);
  return d;
}

export const writeTimestampFile = (path: string, t: Date) => writeSmallFile(path, formatTimestamp(t));

export async function readTimestampFile(path: string): Promise<Date> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`${path}`, { cause: err });
    throw err;
  }
  return parseTimestamp(text);
}
