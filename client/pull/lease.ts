/**
 * Temporary leases, as the Go client's WithLease: everything created while one is active
 * (blobs, ingests, snapshots) is protected from garbage collection until it is deleted; an
 * abandoned lease expires after 24 hours.
 */
import { randomBytes } from 'node:crypto';
import type { Connection } from '../connection.js';

export interface LeaseOptions {
  /** Lease id (default `<nanoseconds>-<random>`, like containerd's random ids). */
  id?: string;
  /** Extra labels. */
  labels?: Record<string, string>;
  /** Lifetime before gc may collect the lease itself (default 24 h). */
  expireMs?: number;
}

/** containerd's random-ish ids: the clock's nanoseconds within the second, then 3 random bytes. */
export function uniquePart(): string {
  const ns = (Date.now() % 1000) * 1_000_000 + Math.floor((performance.now() % 1) * 1_000_000);
  return `${ns}-${randomBytes(3).toString('base64url')}`;
}

/** RFC 3339 in UTC without fractional seconds (Go's time.RFC3339 of a UTC time). */
export function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export async function createLease(conn: Connection, opts: LeaseOptions = {}): Promise<string> {
  const { LeasesDefinition } = await import('../../api/gen/services/leases/v1/leases.js');
  const labels = { 'containerd.io/gc.expire': rfc3339(new Date(Date.now() + (opts.expireMs ?? 24 * 3600_000))), ...(opts.labels ?? {}) };
  const res = await conn.service(LeasesDefinition).create({ id: opts.id ?? uniquePart(), labels });
  return res.lease?.id ?? opts.id ?? '';
}

export async function deleteLease(conn: Connection, id: string, sync = false): Promise<void> {
  const { LeasesDefinition } = await import('../../api/gen/services/leases/v1/leases.js');
  await conn.service(LeasesDefinition).delete({ id, sync });
}

/**
 * Runs `fn` with a temporary lease set on the connection (every call carries it), deleting the
 * lease afterwards. When the connection already carries a lease, `fn` simply joins it.
 */
export async function withLease<T>(conn: Connection, fn: (lease: string) => Promise<T>, opts: LeaseOptions = {}): Promise<T> {
  if (conn.lease) return fn(conn.lease);
  const id = await createLease(conn, opts);
  conn.lease = id;
  try {
    return await fn(id);
  } finally {
    conn.lease = undefined;
    await deleteLease(conn, id).catch(() => undefined);
  }
}
