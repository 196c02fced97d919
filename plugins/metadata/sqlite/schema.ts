/**
 * The metadata database schema. One SQLite file in WAL mode holds every namespaced object;
 * labels are JSON text so label filters and gc reference scans need no extra tables.
 * Migrations are append-only: a database is upgraded by running the statements after its
 * recorded version inside one transaction.
 */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE namespaces (
    name TEXT PRIMARY KEY,
    labels TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE content (
    namespace TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, digest)
  );
  CREATE INDEX content_by_digest ON content(digest);
  CREATE TABLE ingests (
    namespace TEXT NOT NULL,
    ref TEXT NOT NULL,
    backend_ref TEXT NOT NULL,
    expected TEXT NOT NULL DEFAULT '',
    expires_at INTEGER,
    PRIMARY KEY (namespace, ref)
  );
  CREATE TABLE snapshots (
    namespace TEXT NOT NULL,
    snapshotter TEXT NOT NULL,
    key TEXT NOT NULL,
    backend_key TEXT NOT NULL,
    parent TEXT NOT NULL DEFAULT '',
    kind INTEGER NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, snapshotter, key)
  );
  CREATE INDEX snapshots_by_parent ON snapshots(namespace, snapshotter, parent);
  CREATE TABLE images (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    media_type TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    annotations TEXT NOT NULL DEFAULT '{}',
    labels TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
  );
  CREATE TABLE containers (
    namespace TEXT NOT NULL,
    id TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    image TEXT NOT NULL DEFAULT '',
    runtime_name TEXT NOT NULL DEFAULT '',
    runtime_options_type TEXT,
    runtime_options BLOB,
    spec_type TEXT,
    spec BLOB,
    snapshotter TEXT NOT NULL DEFAULT '',
    snapshot_key TEXT NOT NULL DEFAULT '',
    extensions TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, id)
  );
  CREATE TABLE leases (
    namespace TEXT NOT NULL,
    id TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, id)
  );
  CREATE TABLE lease_resources (
    namespace TEXT NOT NULL,
    lease TEXT NOT NULL,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (namespace, lease, type, id)
  );
  CREATE TABLE sequences (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
  );
  `,
];
