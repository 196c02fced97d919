/** Opens the metadata database: WAL, a busy timeout, and schema migrations. */
import type BetterSqlite3 from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { openSqlite } from '../../../core/sys/sqlite.js';
import { MIGRATIONS } from './schema.js';

export function openDatabase(path: string): BetterSqlite3.Database {
  mkdirSync(dirname(path), { recursive: true, mode: 0o711 });
  const db = openSqlite(path);
  db.pragma('foreign_keys = OFF');
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version < MIGRATIONS.length) {
    db.transaction(() => {
      for (const sql of MIGRATIONS.slice(version)) db.exec(sql);
      db.pragma(`user_version = ${MIGRATIONS.length}`);
    })();
  }
  return db;
}

/** Parses a JSON labels column. */
export const parseLabels = (text: string | null | undefined): Record<string, string> => (text ? JSON.parse(text) : {});
/** Serialises labels with sorted keys so equal label sets compare equal as text. */
export const stringifyLabels = (labels: Record<string, string> | undefined): string =>
  JSON.stringify(Object.fromEntries(Object.entries(labels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
