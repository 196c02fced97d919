/**
 * The content store contract: blobs addressed by digest, written through resumable,
 * ref-locked writers. The local backend (io.containerd.content.v1.content), the namespaced
 * metadata view over it, and proxy content plugins all implement it.
 */
import type { Readable } from 'node:stream';
import type { Labels } from '../metadata/metadata.js';
import type { RequestContext } from '../namespaces/namespaces.js';
import type { Adaptor } from '../filters/filters.js';
import { PluginType, serviceRef } from '../plugin/types.js';

export interface ContentInfo {
  digest: string;
  size: number;
  createdAt: Date;
  updatedAt: Date;
  labels: Labels;
}

/** Progress of an active ingest, keyed by the client's ref. */
export interface IngestStatus {
  ref: string;
  offset: number;
  total: number;
  expected: string;
  startedAt: Date;
  updatedAt: Date;
}

export interface WriterOptions {
  ref: string;
  /** Expected total size (0 = unknown). */
  total?: number;
  /** Expected digest ('' = unknown). */
  expected?: string;
}

/**
 * A locked writer for one ref. Data is appended at `status().offset`; a restart from 0
 * truncates. Commit verifies size and digest, then publishes the blob atomically.
 */
export interface ContentWriter {
  status(): IngestStatus;
  /** Digest of the bytes written so far (hashing may still be catching up with the writes). */
  digest(): Promise<string>;
  /**
   * Appends `data`; resolves once the bytes are in the file (the page cache), so bytes a
   * client was told about survive the daemon's death. A write that fails leaves the offset
   * where it began.
   */
  write(data: Uint8Array): Promise<void>;
  /** Discards written data and starts again at offset 0. */
  truncate(): Promise<void>;
  /** FAILED_PRECONDITION on size/digest mismatch (nothing is committed); ALREADY_EXISTS if present. */
  commit(size: number, expected: string, labels?: Labels): Promise<void>;
  /** Releases the lock, keeping the ingest for a later resume. */
  close(): Promise<void>;
}

export interface ContentStore {
  info(ctx: RequestContext, digest: string): Promise<ContentInfo>;
  /** Applies labels under the field mask (`labels`, `labels.<key>`; none = replace all). */
  update(ctx: RequestContext, digest: string, labels: Labels, fieldpaths: readonly string[]): Promise<ContentInfo>;
  /** Every blob matching the filters (fields: digest, size, labels.<key>). */
  list(ctx: RequestContext, filters: readonly string[]): AsyncIterable<ContentInfo>;
  delete(ctx: RequestContext, digest: string): Promise<void>;
  /** Streams `length` bytes (≤0: to the end) from `offset`; OUT_OF_RANGE past the end. */
  read(ctx: RequestContext, digest: string, offset?: number, length?: number): Promise<Readable>;
  /**
   * Optional: the same range's bytes at once, when the blob is small enough for a store to
   * hold whole (a manifest, a config); undefined otherwise (then read()). Errors as read().
   */
  readBytes?(ctx: RequestContext, digest: string, offset?: number, length?: number): Promise<Buffer | undefined>;
  status(ctx: RequestContext, ref: string): Promise<IngestStatus>;
  /** Active ingests matching the filters (field: ref). */
  listStatuses(ctx: RequestContext, filters: readonly string[]): Promise<IngestStatus[]>;
  abort(ctx: RequestContext, ref: string): Promise<void>;
  /** UNAVAILABLE when another writer holds the ref. */
  writer(ctx: RequestContext, opts: WriterOptions): Promise<ContentWriter>;
}

declare module '../plugin/types.js' {
  interface PluginTypeMap {
    [PluginType.Content]: ContentStore;
  }
}

/** Labels containerd clients set on content. */
export const ContentLabel = Object.freeze({
  uncompressed: 'containerd.io/uncompressed',
  distributionSourcePrefix: 'containerd.io/distribution.source.',
});

/** The content service (io.containerd.service.v1.content-service): namespaced content plus events. */
export const ContentServiceRef = serviceRef<ContentStore>(PluginType.Service, 'content-service');

/** Hex length of the digest algorithms content stores accept. */
const DIGEST_HEX: Readonly<Record<string, number>> = { sha256: 64, sha384: 96, sha512: 128 };

/**
 * Why `value` is not a usable content digest (`<alg>:<lowercase hex>` of the algorithm's
 * length), in go-digest's words; undefined when it is valid.
 */
export function digestProblem(value: string): string | undefined {
  const i = value.indexOf(':');
  if (i <= 0 || i === value.length - 1) return 'invalid checksum digest format';
  const alg = value.slice(0, i);
  const hex = value.slice(i + 1);
  const want = Object.prototype.hasOwnProperty.call(DIGEST_HEX, alg) ? DIGEST_HEX[alg] : undefined;
  if (want === undefined) return 'unsupported digest algorithm';
  if (hex.length !== want) return 'invalid checksum digest length';
  if (!/^[a-f0-9]+$/.test(hex)) return 'invalid checksum digest format';
  return undefined;
}

/** Filter fields of content, exactly containerd's adaptInfo: `digest`, `labels.<key>` (no `size`). */
export function contentInfoAdaptor(info: ContentInfo): Adaptor {
  return (path) => {
    const none = { value: '', present: false };
    switch (path[0]) {
      case 'digest': return { value: info.digest, present: true };
      case 'labels': {
        const key = path.slice(1).join('.');
        return Object.prototype.hasOwnProperty.call(info.labels, key) ? { value: info.labels[key]!, present: true } : none;
      }
      default: return none;
    }
  };
}

/** Filter fields of ingests: `ref`. */
export function ingestStatusAdaptor(st: IngestStatus): Adaptor {
  return (path) => (path.length === 1 && path[0] === 'ref' ? { value: st.ref, present: true } : { value: '', present: false });
}
