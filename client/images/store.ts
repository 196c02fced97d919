/** Image records over the Images gRPC service (berthd or containerd). */
import { isAlreadyExists, isNotFound } from '../../core/errdefs/errdefs.js';
import type { Descriptor } from '../../core/images/images.js';
import type { Connection } from '../connection.js';

export interface ImageRecord {
  name: string;
  labels: Record<string, string>;
  target: Descriptor;
  createdAt?: Date;
  updatedAt?: Date;
}

type ImagePb = { name: string; labels?: Record<string, string>; target?: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }; createdAt?: Date; updatedAt?: Date };

function fromPb(i: ImagePb | undefined): ImageRecord {
  const t = i?.target;
  const target: Descriptor = { mediaType: t?.mediaType ?? '', digest: t?.digest ?? '', size: t?.size ?? 0 };
  if (t?.annotations && Object.keys(t.annotations).length) target.annotations = { ...t.annotations };
  return { name: i?.name ?? '', labels: { ...(i?.labels ?? {}) }, target, createdAt: i?.createdAt, updatedAt: i?.updatedAt };
}

const toPb = (i: ImageRecord) => ({
  name: i.name,
  labels: i.labels ?? {},
  target: { mediaType: i.target.mediaType, digest: i.target.digest, size: i.target.size, annotations: i.target.annotations ?? {} },
});

async function images(conn: Connection) {
  const { ImagesDefinition } = await import('../../api/gen/services/images/v1/images.js');
  return conn.service(ImagesDefinition);
}

export async function getImageRecord(conn: Connection, name: string): Promise<ImageRecord> {
  return fromPb((await (await images(conn)).get({ name })).image);
}

export async function listImages(conn: Connection, filters: readonly string[] = []): Promise<ImageRecord[]> {
  return (await (await images(conn)).list({ filters: [...filters] })).images.map(fromPb);
}

export async function createImage(conn: Connection, img: ImageRecord): Promise<ImageRecord> {
  return fromPb((await (await images(conn)).create({ image: toPb(img) })).image);
}

export async function updateImage(conn: Connection, img: ImageRecord, fieldpaths: readonly string[] = []): Promise<ImageRecord> {
  return fromPb((await (await images(conn)).update({ image: toPb(img), updateMask: [...fieldpaths] })).image);
}

/** Creates the image, or replaces it when the name exists (what a pull does). */
export async function createOrUpdateImage(conn: Connection, img: ImageRecord): Promise<ImageRecord> {
  for (;;) {
    try {
      return await createImage(conn, img);
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
    try {
      return await updateImage(conn, img);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}

/** Points an existing image at a new target (or creates it): what an import does. */
export async function upsertImageTarget(conn: Connection, img: ImageRecord): Promise<ImageRecord> {
  try {
    return await updateImage(conn, img, ['target']);
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  return createImage(conn, img);
}

export async function deleteImage(conn: Connection, name: string, opts: { sync?: boolean } = {}): Promise<void> {
  await (await images(conn)).delete({ name, sync: opts.sync ?? false });
}
