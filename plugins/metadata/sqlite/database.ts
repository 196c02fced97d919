/** Opens the metadata database: WAL, a busy timeout, and schema migrations. */
import type BetterSqlite3 from 'better-sqlite3';
import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { MIGRATIONS } from './schema.js';

const require = createRequire(import.meta.url);

export function openDatabase(path: string): BetterSqlite3.Database {
  mkdirSync(dirname(path), { recursive: true, mode: 0o711 });
  const Database = require('better-sqlite3') as typeof BetterSqlite3;
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  // NORMAL in WAL mode survives any process crash; only an OS crash can drop the last commits.
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
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
