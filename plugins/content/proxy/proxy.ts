/**
 * A content store served by another process over containerd's content gRPC API (a proxy
 * plugin). Writers speak the bidirectional Write protocol: STAT to open, WRITE at the current
 * offset (offset 0 on a non-empty ingest restarts it), COMMIT with size and digest, checked
 * against the answer as containerd's remote writer does; reads stream in chunks. Calls carry
 * the caller's namespace; a peer that cannot be reached is an UNAVAILABLE error naming the
 * proxy (see plugins/proxy/peer.ts).
 */
import { Readable } from 'node:stream';
import type { DuplexCall, ServiceClient } from '../../../client/connection.js';
import { FailedPreconditionError, InvalidArgumentError, UnavailableError } from '../../../core/errdefs/errdefs.js';
import type { ContentInfo, ContentStore, ContentWriter, IngestStatus, WriterOptions } from '../../../core/content/content.js';
import type { Labels } from '../../../core/metadata/metadata.js';
import type { RequestContext } from '../../../core/namespaces/namespaces.js';
import { ContentDefinition, WriteAction, type Info, type Status, type WriteContentResponse } from '../../../api/gen/services/content/v1/content.js';
import type { Peer } from '../../proxy/peer.js';

/** The largest data payload of one WRITE message (well under the 16 MiB message limit). */
export const PROXY_WRITE_CHUNK = 1 << 20;

const ZERO = new Date(0);
const toInfo = (i: Info | undefined): ContentInfo => ({
  digest: i?.digest ?? '', size: i?.size ?? 0, createdAt: i?.createdAt ?? ZERO, updatedAt: i?.updatedAt ?? ZERO, labels: { ...(i?.labels ?? {}) },
});
const toStatus = (s: Status | undefined): IngestStatus => ({
  ref: s?.ref ?? '', offset: s?.offset ?? 0, total: s?.total ?? 0, expected: s?.expected ?? '',
  startedAt: s?.startedAt ?? ZERO, updatedAt: s?.updatedAt ?? ZERO,
});

type Api = ServiceClient<typeof ContentDefinition>;
type WriteCall = DuplexCall<(typeof ContentDefinition)['methods']['write']>;
type WriteRequest = Parameters<WriteCall['write']>[0];

class ProxyWriter implements ContentWriter {
  private current: IngestStatus;
  private running: string;
  /** Whether `running` covers every byte written (servers may leave WRITE answers without one). */
  private fresh = true;
  private ended = false;

  private constructor(
    private readonly peer: Peer,
    private readonly call: WriteCall,
    private readonly responses: AsyncIterator<WriteContentResponse>,
    ref: string,
    first: WriteContentResponse,
    expected: string,
  ) {
    this.current = {
      ref, offset: first.offset, total: first.total, expected,
      startedAt: first.startedAt ?? new Date(), updatedAt: first.updatedAt ?? new Date(),
    };
    this.running = first.digest;
  }

  static async open(peer: Peer, ctx: RequestContext, opts: WriterOptions): Promise<ProxyWriter> {
    const call = await peer.call(ContentDefinition, (api) => api.write(peer.options(ctx)));
    const responses = call.responses[Symbol.asyncIterator]();
    try {
      await call.write({ action: WriteAction.STAT, ref: opts.ref, total: opts.total ?? 0, expected: opts.expected ?? '' });
      const first = await responses.next();
      if (first.done) throw new UnavailableError(`content writer for ${opts.ref} closed before answering`);
      return new ProxyWriter(peer, call, responses, opts.ref, first.value, opts.expected ?? '');
    } catch (err) {
      call.cancel();
      throw peer.fail(err);
    }
  }

  /** One request, one answer (the protocol is strictly alternating). */
  private async exchange(req: WriteRequest): Promise<WriteContentResponse> {
    if (this.ended) throw new FailedPreconditionError(`content writer for ${this.current.ref} is closed`);
    try {
      await this.call.write(req);
      const res = await this.responses.next();
      if (res.done) throw new UnavailableError(`content writer for ${this.current.ref} closed by the peer`);
      const r = res.value;
      this.current = { ...this.current, offset: r.offset, total: r.total || this.current.total, updatedAt: r.updatedAt ?? new Date() };
      this.fresh = r.digest !== '';
      if (this.fresh) this.running = r.digest;
      return r;
    } catch (err) {
      this.end(true);
      throw this.peer.fail(err);
    }
  }

  private end(cancel = false): void {
    if (this.ended) return;
    this.ended = true;
    if (cancel) this.call.cancel();
    else this.call.end();
  }

  status(): IngestStatus {
    return { ...this.current };
  }

  async digest(): Promise<string> {
    if (!this.fresh && !this.ended) await this.exchange({ action: WriteAction.STAT, ref: this.current.ref });
    return this.running;
  }

  async write(data: Uint8Array): Promise<void> {
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    for (let at = 0; at < buf.length; at += PROXY_WRITE_CHUNK) {
      const part = buf.subarray(at, at + PROXY_WRITE_CHUNK);
      const before = this.current.offset;
      const res = await this.exchange({ action: WriteAction.WRITE, ref: this.current.ref, offset: before, data: part });
      if (res.offset - before !== part.length) {
        this.end(true);
        throw new FailedPreconditionError(`short write to ${this.current.ref}: ${res.offset - before} of ${part.length} bytes`);
      }
    }
  }

  async truncate(): Promise<void> {
    // Offset 0 on a non-empty ingest restarts it (the only truncation the protocol has).
    await this.exchange({ action: WriteAction.WRITE, ref: this.current.ref, offset: 0, data: Buffer.alloc(0) });
  }

  async commit(size: number, expected: string, labels: Labels = {}): Promise<void> {
    try {
      const res = await this.exchange({
        action: WriteAction.COMMIT, ref: this.current.ref, offset: this.current.offset, total: size, expected, labels,
      });
      if (size !== 0 && res.offset !== size) throw new FailedPreconditionError(`unexpected commit size: ${res.offset} != ${size}`);
      if (expected && res.digest !== expected) throw new FailedPreconditionError(`unexpected commit digest: ${res.digest} != ${expected}`);
      this.running = res.digest || this.running;
    } finally {
      this.end();
    }
  }

  async close(): Promise<void> {
    this.end();
  }
}

export class ProxyContentStore implements ContentStore {
  /** `name` is the id this daemon knows the proxy by (`[proxy_plugins.<name>]`). */
  constructor(readonly name: string, private readonly peer: Peer) {}

  private unary<T>(fn: (api: Api) => Promise<T>): Promise<T> {
    return this.peer.call(ContentDefinition, fn);
  }

  async info(ctx: RequestContext, digest: string): Promise<ContentInfo> {
    return toInfo((await this.unary((api) => api.info({ digest }, this.peer.options(ctx)))).info);
  }

  async update(ctx: RequestContext, digest: string, labels: Labels, fieldpaths: readonly string[]): Promise<ContentInfo> {
    const res = await this.unary((api) => api.update({ info: { digest, labels }, updateMask: [...fieldpaths] }, this.peer.options(ctx)));
    return toInfo(res.info);
  }

  async *list(ctx: RequestContext, filters: readonly string[]): AsyncIterable<ContentInfo> {
    for await (const batch of this.peer.stream(ContentDefinition, (api) => api.list({ filters: [...filters] }, this.peer.options(ctx)))) {
      for (const i of batch.info) yield toInfo(i);
    }
  }

  async delete(ctx: RequestContext, digest: string): Promise<void> {
    await this.unary((api) => api.delete({ digest }, this.peer.options(ctx)));
  }

  /**
   * The first answer is awaited here, so a missing blob or an unreachable peer is this call's
   * error rather than the first read's.
   */
  async read(ctx: RequestContext, digest: string, offset = 0, length = 0): Promise<Readable> {
    if (offset < 0) throw new InvalidArgumentError(`negative offset ${offset}`);
    const chunks = this.peer.stream(ContentDefinition, (api) => api.read({ digest, offset, size: length > 0 ? length : 0 }, this.peer.options(ctx)));
    const first = await chunks.next();
    return Readable.from((async function* () {
      if (first.done) return;
      if (first.value.data.length) yield first.value.data;
      for await (const chunk of chunks) if (chunk.data.length) yield chunk.data;
    })(), { objectMode: false });
  }

  async status(ctx: RequestContext, ref: string): Promise<IngestStatus> {
    return toStatus((await this.unary((api) => api.status({ ref }, this.peer.options(ctx)))).status);
  }

  async listStatuses(ctx: RequestContext, filters: readonly string[]): Promise<IngestStatus[]> {
    return (await this.unary((api) => api.listStatuses({ filters: [...filters] }, this.peer.options(ctx)))).statuses.map(toStatus);
  }

  async abort(ctx: RequestContext, ref: string): Promise<void> {
    await this.unary((api) => api.abort({ ref }, this.peer.options(ctx)));
  }

  writer(ctx: RequestContext, opts: WriterOptions): Promise<ContentWriter> {
    return ProxyWriter.open(this.peer, ctx, opts);
  }

  async close(): Promise<void> {
    this.peer.close();
  }
}
