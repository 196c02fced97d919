/**
 * Content.Write, the bidirectional upload protocol, as containerd 1.6 serves it:
 *  - the first request must name a ref; its total and expected digest open the writer;
 *  - every request gets one response echoing its action, with the writer's current offset;
 *  - a request carrying an expected digest that is already present ends the session with
 *    ALREADY_EXISTS (the ingest is aborted): clients count that as success;
 *  - every answer carries the running digest; STAT also reports the start/update times
 *    and the total;
 *  - WRITE/COMMIT with a non-zero offset must be at the current offset (OUT_OF_RANGE
 *    otherwise); offset 0 on a non-empty ingest restarts it; data is appended;
 *  - COMMIT verifies size and digest and records the blob with the request's labels;
 *  - when the session ends without an error (after COMMIT, or when the client half-closes)
 *    the last response is sent once more, as the 1.6 server's deferred send does.
 *
 * A WRITE is answered once its bytes are in the file (ContentWriter.write), so bytes a client
 * was told about survive kill -9 of the daemon, as with containerd.
 */
import type { ContentStore, ContentWriter } from '../../../core/content/content.js';
import { Code, DataLossError, isNotFound, messageOf, OutOfRangeError, RemoteError } from '../../../core/errdefs/errdefs.js';
import type { Logger } from '../../../core/log/logger.js';
import type { CallContext, DuplexCall, DuplexHandler } from '../../../core/server/grpc-adapter.js';
import { WriteAction, type WriteContentRequest, type WriteContentResponse } from '../../../api/gen/services/content/v1/content.js';

const { STAT, WRITE, COMMIT } = WriteAction;

// ---------------------------------------------------------------- the session

export function writeHandler(store: ContentStore, log: Logger): DuplexHandler {
  // The server grants wide HTTP/2 windows (core/server/grpc-server.ts), so a 1 MiB message
  // arrives without waiting for window updates.
  return async (call: DuplexCall<WriteContentRequest, WriteContentResponse>, ctx: CallContext) => {
    const requests = call.requests;
    // Each response is a snapshot: the session keeps mutating its message.
    const send = () => call.send({ ...msg });
    const first = await requests.next();
    if (first.done) return;
    let req = first.value;
    const ref = req.ref;
    if (!ref) throw new RemoteError(Code.INVALID_ARGUMENT, 'first message must have a reference');
    let total = req.total;
    let expected = req.expected;
    const msg: WriteContentResponse = { action: STAT, startedAt: undefined, updatedAt: undefined, offset: 0, total: 0, digest: '' };
    const w: ContentWriter = await store.writer(ctx, { ref, total, expected });
    try {
      for (;;) {
        msg.action = req.action;
        const ws = w.status();
        msg.offset = ws.offset;
        if (req.expected) {
          expected = req.expected;
          let present = false;
          try {
            await store.info(ctx, req.expected);
            present = true;
          } catch (err) {
            if (!isNotFound(err)) throw err;
          }
          if (present) {
            await w.close().catch((err) => log.error('failed to close writer', { ref, error: messageOf(err) }));
            await store.abort(ctx, ref).catch((err) => log.debug('failed to abort write', { ref, error: messageOf(err) }));
            throw new RemoteError(Code.ALREADY_EXISTS, `blob with expected digest ${req.expected} exists`);
          }
        }
        if (req.total > 0) total = req.total;
        if (req.action === STAT) {
          msg.digest = await w.digest();
          msg.startedAt = ws.startedAt;
          msg.updatedAt = ws.updatedAt;
          msg.total = total;
        } else if (req.action === WRITE || req.action === COMMIT) {
          if (req.offset > 0 && req.offset !== ws.offset) {
            throw new OutOfRangeError(`write @${req.offset} must occur at current offset ${ws.offset}`);
          }
          if (req.offset === 0 && ws.offset > 0) {
            await w.truncate();
            msg.offset = 0;
          }
          if (req.data.length > 0) {
            const before = w.status().offset;
            await w.write(req.data);
            const n = w.status().offset - before;
            if (n !== req.data.length) throw new DataLossError(`wrote ${n} of ${req.data.length} bytes`);
            msg.offset += n;
          }
          if (req.action === COMMIT) {
            const labels = Object.keys(req.labels ?? {}).length ? req.labels : undefined;
            await w.commit(total, expected, labels);
          }
          // Every answer carries the digest of all bytes so far, as containerd's: Go clients
          // keep the last one as the writer's Digest(), which an image converter uses for a
          // blob whose commit said ALREADY_EXISTS.
          msg.digest = await w.digest();
        }
        await send();
        if (req.action === COMMIT) break;
        const next = await requests.next();
        if (next.done) break;
        req = next.value;
      }
    } finally {
      await w.close().catch(() => undefined);
    }
    await send();
  };
}
