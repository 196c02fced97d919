/**
 * Client image helpers: records, content access, and what `run`/`install`-style commands need
 * from an image (its config and chain id, unpacked into a snapshotter).
 *
 *   const img = await getImage(conn, 'docker.io/library/busybox:latest');
 *   const { chainID, snapshotter } = await ensureUnpacked(conn, img);
 *   img.config.config?.Cmd, img.config.config?.Env …
 */
import { isNotFound } from '../../core/errdefs/errdefs.js';
import type { Connection } from '../connection.js';
import { defaultSpec, format, only, parse, type Platform } from '../platforms/index.js';
import { withLease } from '../pull/lease.js';
import { resolveSnapshotter, unpackLayers } from '../pull/unpack.js';
import { ContentClient } from './content.js';
import { imageContents, type ImageContents } from './image.js';
import { getImageRecord, type ImageRecord } from './store.js';

export * from './content.js';
export * from './image.js';
export * from './store.js';
export { resolveSnapshotter, DEFAULT_SNAPSHOTTER } from '../pull/unpack.js';

export interface ImageHandle extends ImageContents {
  record: ImageRecord;
  /** The platform the manifest was chosen for ("linux/amd64"). */
  platform: string;
}

export interface GetImageOptions {
  /** "os/arch[/variant]" or a Platform; default: this host (compatible platforms accepted). */
  platform?: string | Platform;
}

/** The image `name` with its manifest, config, diff ids, layers and chain id for a platform. */
export async function getImage(conn: Connection, name: string, opts: GetImageOptions = {}): Promise<ImageHandle> {
  const record = await getImageRecord(conn, name);
  const p = typeof opts.platform === 'string' ? parse(opts.platform) : (opts.platform ?? defaultSpec());
  const contents = await imageContents(new ContentClient(conn), record.target, only(p));
  return { ...contents, record, platform: format(p) };
}

/** Whether the image's top snapshot (its chain id) exists in `snapshotter`. */
export async function isUnpacked(conn: Connection, img: ImageHandle, snapshotter?: string): Promise<boolean> {
  if (!img.chainID) return true;
  const sn = await resolveSnapshotter(conn, snapshotter);
  const { SnapshotsDefinition } = await import('../../api/gen/services/snapshots/v1/snapshots.js');
  try {
    await conn.service(SnapshotsDefinition).stat({ snapshotter: sn, key: img.chainID });
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

export interface EnsureUnpackedResult {
  chainID: string;
  snapshotter: string;
  /** True when this call had to extract layers. */
  unpacked: boolean;
}

/**
 * Makes sure the image is unpacked in the snapshotter (default: the namespace's default, else
 * overlayfs), unpacking it under a temporary lease when needed. Accepts a name or a handle.
 */
export async function ensureUnpacked(conn: Connection, image: string | ImageHandle, opts: GetImageOptions & { snapshotter?: string } = {}): Promise<EnsureUnpackedResult> {
  const img = typeof image === 'string' ? await getImage(conn, image, opts) : image;
  const snapshotter = await resolveSnapshotter(conn, opts.snapshotter);
  if (await isUnpacked(conn, img, snapshotter)) return { chainID: img.chainID, snapshotter, unpacked: false };
  const chainID = await withLease(conn, () => unpackLayers(conn, img.configDesc, img.layers, { snapshotter }));
  return { chainID, snapshotter, unpacked: true };
}

/** Unpacks the image (layers already present are skipped) and returns its chain id. */
export async function unpackImage(conn: Connection, img: ImageHandle, opts: { snapshotter?: string } = {}): Promise<string> {
  const snapshotter = await resolveSnapshotter(conn, opts.snapshotter);
  return withLease(conn, () => unpackLayers(conn, img.configDesc, img.layers, { snapshotter }));
}
