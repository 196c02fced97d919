/**
 * Opens berth's embedded SQLite databases (the metadata store and each snapshotter's
 * storage) with the settings they share.
 *
 * better-sqlite3's JavaScript is bundled with the program (compiled from its code cache,
 * instead of a dozen separate module loads at start-up); its native addon is handed over by
 * path, which also skips the package's own search for it (a stack-trace walk through
 * candidate directories).
 */
import Database from 'better-sqlite3';
import { createRequire } from 'node:module';

export type SqliteDatabase = Database.Database;

let addonPath: string | null | undefined;

function nativeAddon(): string | undefined {
  if (addonPath === undefined) {
    try {
      addonPath = createRequire(import.meta.url).resolve('better-sqlite3/build/Release/better_sqlite3.node');
    } catch {
      addonPath = null; // built elsewhere (a debug build): better-sqlite3 looks for it itself
    }
  }
  return addonPath ?? undefined;
}

/**
 * Opens (creating when missing) the database at `path` in WAL mode. WAL with
 * synchronous=NORMAL survives any crash of the process; only an OS crash can drop the last
 * commits. Writers wait up to 5 s for a lock instead of failing at once.
 */
export function openSqlite(path: string): SqliteDatabase {
  const nativeBinding = nativeAddon();
  let db: SqliteDatabase | undefined;
  try {
    db = new Database(path, nativeBinding ? { nativeBinding } : {});
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 5000');
    return db;
  } catch (err) {
    db?.close();
    // SQLite's own words ("file is not a database") do not say which file.
    const e = err as Error & { code?: string };
    throw Object.assign(new Error(`${path}: ${e.message}`, { cause: err }), { code: e.code });
  }
}
