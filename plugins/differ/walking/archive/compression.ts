/**
 * Layer compression: which codec a layer media type declares, sniffing the codec from the
 * first bytes of a blob, and turning a compressed byte stream into a plain tar stream.
 *
 * As in containerd, the media type only decides whether a blob is *meant* to be compressed;
 * for compressed (and the ambiguous Docker plain-tar) types the actual codec is taken from the
 * magic bytes, so a mislabelled gzip/zstd blob still applies.
 */
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Decompress as ZstdDecompress } from 'fzstd';
import { InvalidArgumentError } from '../../../../core/errdefs/errdefs.js';

export type Compression = 'none' | 'gzip' | 'zstd';

/** Makes the decompressed stream of gzip data (default: zlib on this thread). */
export type GunzipFactory = (compressed: Readable) => Readable;

export const MediaTypes = {
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  ociLayerNonDistributable: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  ociLayerNonDistributableGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  ociLayerNonDistributableZstd: 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerForeignLayer: 'application/vnd.docker.image.rootfs.foreign.diff.tar',
  dockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

/** How many leading bytes detectCompression looks at (at most). */
export const SNIFF_BYTES = 8;

/**
 * The codec of a blob judged by its first bytes: gzip (1f 8b 08), zstd (a zstd frame magic or
 * a skippable-frame magic 0x184D2A5?), anything else is taken as uncompressed.
 */
export function detectCompression(firstBytes: Uint8Array): Compression {
  const b = firstBytes;
  if (b.length >= 3 && b[0] === 0x1f && b[1] === 0x8b && b[2] === 0x08) return 'gzip';
  if (b.length >= 4 && b[0] === 0x28 && b[1] === 0xb5 && b[2] === 0x2f && b[3] === 0xfd) return 'zstd';
  // Skippable frames (magic 0x184D2A50..0x184D2A5F, little endian) need a length field after them.
  if (b.length >= 8 && (b[0] & 0xf0) === 0x50 && b[1] === 0x2a && b[2] === 0x4d && b[3] === 0x18) return 'zstd';
  return 'none';
}

/**
 * The compression a layer media type declares. The Docker plain `diff.tar` types declare
 * none, but are known to carry gzip data sometimes; see isAmbiguousMediaType. Unknown media
 * types (including encrypted layers, which need a stream processor berth does not have) are
 * an InvalidArgumentError naming the type.
 */
export function compressionOfMediaType(mediaType: string): Compression {
  const [base, ...exts] = mediaType.trim().split('+');
  switch (base) {
    case MediaTypes.dockerLayer:
    case MediaTypes.dockerForeignLayer:
      if (exts.length === 0) return 'none';
      break;
    case MediaTypes.dockerLayerGzip:
    case MediaTypes.dockerForeignLayerGzip:
      if (exts.length === 0) return 'gzip';
      break;
    case MediaTypes.ociLayer:
    case MediaTypes.ociLayerNonDistributable:
      if (exts.length === 0) return 'none';
      if (exts.length === 1 && exts[0] === 'gzip') return 'gzip';
      if (exts.length === 1 && exts[0] === 'zstd') return 'zstd';
      break;
  }
  throw new InvalidArgumentError(`unsupported layer media type ${JSON.stringify(mediaType)}`);
}

/** Docker's plain-tar types: labelled uncompressed, but the bytes decide (as in containerd). */
export function isAmbiguousMediaType(mediaType: string): boolean {
  const mt = mediaType.trim();
  return mt === MediaTypes.dockerLayer || mt === MediaTypes.dockerForeignLayer;
}

/**
 * A readable of the decompressed bytes of `stream` compressed with `kind` ('none' returns
 * the stream itself). Errors of the source are forwarded to the returned stream. `gunzip`
 * replaces the default zlib stream for gzip data.
 */
export function decompress(stream: Readable, kind: Compression, gunzip?: GunzipFactory): Readable {
  switch (kind) {
    case 'none':
      return stream;
    case 'gzip':
      return gunzip ? gunzip(stream) : pipeInto(stream, createGunzip({ chunkSize: 256 * 1024 }));
    case 'zstd':
      return pipeInto(stream, new ZstdDecompressStream());
    default:
      throw new InvalidArgumentError(`unknown compression ${JSON.stringify(kind as string)}`);
  }
}

/**
 * The plain tar stream of a layer blob of the given media type: validates the type, and for
 * types that may be compressed picks the codec from the magic bytes.
 */
export async function decompressLayer(stream: Readable, mediaType: string, gunzip?: GunzipFactory): Promise<Readable> {
  const declared = compressionOfMediaType(mediaType);
  if (declared === 'none' && !isAmbiguousMediaType(mediaType)) return stream;
  return decompressDetected(stream, gunzip);
}

/**
 * Sniffs the first bytes of `stream` and returns the decompressed stream. The sniffed bytes
 * are not lost: they are put back in front of the rest.
 */
export async function decompressDetected(stream: Readable, gunzip?: GunzipFactory): Promise<Readable> {
  const { head, rest } = await peek(stream, SNIFF_BYTES);
  return decompress(rest, detectCompression(head), gunzip);
}

/**
 * Reads at least `n` bytes (fewer at end of stream) and puts them back in front of the rest:
 * `rest` is `stream` itself with the bytes unshifted, or - when the stream already ended - a
 * new stream of just those bytes. The unshift must happen synchronously in the 'readable'
 * handler: once read() has drained an ended stream, 'end' is emitted on the next tick and a
 * later unshift would be lost (small blobs read with an explicit end offset hit this).
 */
async function peek(stream: Readable, n: number): Promise<{ head: Buffer; rest: Readable }> {
  const parts: Buffer[] = [];
  let have = 0;
  let rest: Readable = stream;
  await new Promise<void>((resolve, reject) => {
    const done = (err?: Error, ended = false) => {
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('error', onError);
      if (err) return reject(err);
      const head = Buffer.concat(parts);
      if (ended) rest = Readable.from(head.length ? [head] : [], { objectMode: false });
      else if (head.length) stream.unshift(head);
      resolve();
    };
    const onReadable = () => {
      let chunk: Buffer | null;
      while (have < n && (chunk = stream.read() as Buffer | null) !== null) {
        parts.push(chunk);
        have += chunk.length;
      }
      if (have >= n) done();
    };
    const onEnd = () => done(undefined, true);
    const onError = (err: Error) => done(err);
    stream.on('readable', onReadable);
    stream.on('end', onEnd);
    stream.on('error', onError);
    onReadable();
  });
  return { head: Buffer.concat(parts), rest };
}

function pipeInto<T extends Transform>(source: Readable, target: T): T {
  source.on('error', (err) => target.destroy(err));
  target.on('close', () => {
    if (!source.readableEnded) source.destroy();
  });
  source.pipe(target);
  return target;
}

/** A Transform around fzstd's streaming decoder (pure JS; Node 20's zlib has no zstd). */
class ZstdDecompressStream extends Transform {
  readonly #decoder: ZstdDecompress;
  #sawInput = false;

  constructor() {
    super({ readableHighWaterMark: 1024 * 1024 });
    this.#decoder = new ZstdDecompress((data) => {
      // fzstd hands out a fresh array per block, so it can be wrapped without a copy.
      if (data.length) this.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      if (chunk.length) this.#sawInput = true;
      this.#decoder.push(chunk, false);
      cb();
    } catch (err) {
      cb(zstdError(err));
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      if (this.#sawInput) this.#decoder.push(new Uint8Array(0), true);
      cb();
    } catch (err) {
      cb(zstdError(err));
    }
  }
}

function zstdError(err: unknown): Error {
  const e = new InvalidArgumentError(`zstd: corrupt or truncated data: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  return e;
}
