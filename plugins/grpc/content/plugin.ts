/**
 * io.containerd.grpc.v1.content — the Content gRPC service over content-service: digest
 * validation, List batching, chunked Read, and the bidirectional Write protocol of
 * containerd 1.6 (see WriteSession).
 */
import { ContentServiceRef, digestProblem, type ContentInfo, type IngestStatus } from '../../../core/content/content.js';
import { Code, OutOfRangeError, RemoteError } from '../../../core/errdefs/errdefs.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';
import { implement, type GrpcPlugin } from '../../../core/server/grpc-adapter.js';

/** Go's zero time, which containerd sends for timestamps it leaves unset. */
const ZERO_TIME = new Date(-62135596800000);
const LIST_BATCH = 100;
const READ_CHUNK = 1 << 20;

const statusToGrpc = (s: IngestStatus) => ({
  startedAt: s.startedAt,
  updatedAt: s.updatedAt,
  ref: s.ref,
  offset: s.offset,
  total: s.total,
  expected: s.expected,
});

const infoToGrpc = (i: ContentInfo) => ({ digest: i.digest, size: i.size, createdAt: i.createdAt, updatedAt: i.updatedAt, labels: i.labels });

export const contentGrpcPlugin = definePlugin<Record<string, never>, GrpcPlugin>({
  type: PluginType.GRPC,
  id: 'content',
  requires: [PluginType.Service],
  async init(ctx) {
    const store = await ctx.service(ContentServiceRef);
    const { ContentService } = await import('../../../api/gen/services/content/v1/content.js');
    const { writeHandler } = await import('./write.js');
    const log = ctx.log;
    const failedValidation = (digest: string) => {
      if (digestProblem(digest)) throw new RemoteError(Code.INVALID_ARGUMENT, `${JSON.stringify(digest)} failed validation`);
    };
    return {
      grpcServices: () => [
        implement(ContentService, {
          info: async (req, c) => {
            failedValidation(req.digest);
            return { info: infoToGrpc(await store.info(c, req.digest)) };
          },
          update: async (req, c) => {
            const digest = req.info?.digest ?? '';
            failedValidation(digest);
            const info = await store.update(c, digest, req.info?.labels ?? {}, req.updateMask ?? []);
            return { info: infoToGrpc(info) };
          },
          list: async (req, c, send) => {
            let batch: ReturnType<typeof infoToGrpc>[] = [];
            for await (const i of store.list(c, req.filters ?? [])) {
              // containerd's List leaves updated_at unset.
              batch.push({ ...infoToGrpc(i), updatedAt: ZERO_TIME });
              if (batch.length >= LIST_BATCH) {
                await send({ info: batch });
                batch = [];
              }
            }
            if (batch.length) await send({ info: batch });
          },
          delete: async (req, c) => {
            const problem = digestProblem(req.digest);
            if (problem) throw new RemoteError(Code.INVALID_ARGUMENT, problem);
            await store.delete(c, req.digest);
            return {};
          },
          read: async (req, c, send) => {
            const problem = digestProblem(req.digest);
            if (problem) throw new RemoteError(Code.INVALID_ARGUMENT, `${req.digest}: ${problem}`);
            const info = await store.info(c, req.digest);
            const offset = Math.max(0, req.offset);
            if (offset > info.size) throw new OutOfRangeError(`read past object length ${info.size} bytes`);
            const size = req.size <= 0 || offset + req.size > info.size ? info.size - offset : req.size;
            if (size === 0) return;
            // A small blob in one piece: its answer and the status then leave in one write,
            // where a stream's end comes a tick after its data (and so in a second one). Only
            // asked for what fits one answer: a bigger read streams without a lookup in vain.
            const bytes = size <= READ_CHUNK ? await store.readBytes?.(c, req.digest, offset, size) : undefined;
            if (bytes) {
              await send({ offset: 0, data: bytes });
              return;
            }
            const stream = await store.read(c, req.digest, offset, size);
            // Like containerd, response offsets count from the start of this read.
            let sent = 0;
            try {
              for await (const chunk of stream as AsyncIterable<Buffer>) {
                for (let i = 0; i < chunk.length; i += READ_CHUNK) {
                  const data = chunk.subarray(i, Math.min(chunk.length, i + READ_CHUNK));
                  await send({ offset: sent, data });
                  sent += data.length;
                }
                if (c.signal.aborted) break;
              }
            } finally {
              stream.destroy();
            }
          },
          status: async (req, c) => ({ status: statusToGrpc(await store.status(c, req.ref)) }),
          listStatuses: async (req, c) => ({ statuses: (await store.listStatuses(c, req.filters ?? [])).map(statusToGrpc) }),
          write: writeHandler(store, log),
          abort: async (req, c) => {
            await store.abort(c, req.ref);
            return {};
          },
        }, log),
      ],
    };
  },
});
