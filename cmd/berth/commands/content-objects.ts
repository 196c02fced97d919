/**
 * `berth content fetch-object`, `push-object` and `edit`: single objects between a registry
 * and the content store, as ctr's (no image walk, no unpacking, no image record), and one
 * blob through an editor into a new blob.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GcLabel } from '../../../core/metadata/labels.js';
import type { Connection } from '../../../client/connection.js';
import { ContentClient } from '../../../client/images/content.js';
import { rfc3339, withLease } from '../../../client/pull/lease.js';
import { validateDigest } from '../../../client/reference/digest.js';
import { Resolver, type ResolverOptions } from '../../../client/remotes/resolver.js';
import type { Descriptor } from '../../../core/images/images.js';

/** Writes the object `ref` resolves to (a manifest or an index) to `out`. */
export async function fetchObject(ref: string, remote: ResolverOptions, out: Writable): Promise<void> {
  const resolver = new Resolver(remote);
  const resolved = await resolver.resolve(ref);
  const fetcher = await resolver.fetcher(resolved.name);
  await pipeline(await fetcher.fetch(resolved.descriptor), out, { end: false });
}

/** Pushes blob `digest` of the content store to `ref`'s repository as `mediaType`. */
export async function pushObject(conn: Connection, ref: string, digest: string, mediaType: string, remote: ResolverOptions): Promise<Descriptor> {
  validateDigest(digest);
  return withLease(conn, async () => {
    const cs = new ContentClient(conn);
    const info = await cs.info(digest);
    const desc: Descriptor = { mediaType, digest, size: info.size };
    const pusher = await new Resolver(remote).pusher(ref);
    // A manifest goes under the reference's tag, as a Go pusher made for that reference does.
    await pusher.push(desc, () => cs.readStream(digest), { tag: pusher.ref.tag || undefined });
    return desc;
  });
}

/**
 * `content edit`: the blob is copied to a temporary file, `editor` runs on it (through sh,
 * with this terminal), and what the file then holds becomes a new blob, whose digest is
 * returned. The file is read back by name: editors that save by replacing the file (sed -i,
 * vim's backupcopy) are seen too. The new blob carries a gc root label, so it outlives the
 * command (ctr's lease alone would let the collector take it). Content the store already
 * holds (nothing was changed) is not an error: its digest is returned.
 */
export async function editBlob(conn: Connection, digest: string, editor: string): Promise<string> {
  validateDigest(digest);
  return withLease(conn, async () => {
    const cs = new ContentClient(conn);
    await cs.info(digest);
    const dir = await mkdtemp(join(process.env.XDG_RUNTIME_DIR || tmpdir(), 'edit-'));
    try {
      const file = join(dir, digest.replace(':', '-'));
      await pipeline(cs.readStream(digest), createWriteStream(file, { mode: 0o600 }));
      const r = spawnSync('sh', ['-c', `${editor} ${file}`], { stdio: 'inherit' });
      if (r.error) throw r.error;
      if (r.status !== 0) throw new Error(`editor ${JSON.stringify(editor)} exited with ${r.status ?? r.signal}`);
      const hash = createHash('sha256');
      await pipeline(createReadStream(file), hash);
      const edited = { digest: `sha256:${hash.digest('hex')}`, size: (await stat(file)).size };
      // writeBlob counts content the store already holds as written.
      await cs.writeBlob(`edit-${digest}`, createReadStream(file), edited, { [GcLabel.root]: rfc3339(new Date()) });
      return edited.digest;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}
