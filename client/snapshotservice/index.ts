/**
 * Serving a raw snapshotter over containerd's Snapshots gRPC API, so that another daemon
 * (berthd or containerd) can attach it as a proxy plugin. This is the counterpart of
 * containerd's contrib/snapshotservice:
 *
 *   const server = await serveSnapshotter(new MySnapshotter(root), '/run/mysnap.sock');
 *   …
 *   await server.close();
 *
 * The `snapshotter` field of every request is ignored: the socket serves exactly one
 * snapshotter, whatever name the calling daemon knows it by. Keys arrive as the caller's
 * backend keys (`<ns>/<seq>/<key>` from a metadata layer) and are passed through untouched.
 * Cleanup reaches the backend when it implements it; otherwise it answers UNIMPLEMENTED.
 */
import { NotImplementedError } from '../../core/errdefs/errdefs.js';
import { silentLogger, type Logger } from '../../core/log/logger.js';
import type { Mount } from '../../core/mount/types.js';
import { implement, type GrpcServiceBinding } from '../../core/server/grpc-adapter.js';
import { listenGrpc, type RunningServer } from '../../core/server/grpc-server.js';
import { isCleaner, Kind, type SnapshotInfo, type SnapshotOptions, type Snapshotter } from '../../core/snapshots/snapshotter.js';
import {
  Kind as WireKind,
  SnapshotsService,
  type Info as WireInfo,
} from '../../api/gen/services/snapshots/v1/snapshots.js';

/** Infos per List response message (containerd's snapshot service sends blocks of 100). */
export const LIST_BLOCK = 100;

function wireKind(k: Kind): WireKind {
  if (k === Kind.Active) return WireKind.ACTIVE;
  if (k === Kind.View) return WireKind.VIEW;
  return WireKind.COMMITTED;
}

function wireInfo(info: SnapshotInfo): WireInfo {
  return {
    name: info.name,
    parent: info.parent,
    kind: wireKind(info.kind),
    createdAt: info.createdAt,
    updatedAt: info.updatedAt,
    labels: info.labels,
  };
}

function wireMounts(mounts: readonly Mount[]) {
  return mounts.map((m) => ({ type: m.type, source: m.source, target: m.target ?? '', options: [...m.options] }));
}

function withLabels(labels: Record<string, string> | undefined): SnapshotOptions | undefined {
  return labels && Object.keys(labels).length > 0 ? { labels } : undefined;
}

/** The Snapshots gRPC service over `sn`, ready for listenGrpc. */
export function snapshotsService(sn: Snapshotter, log?: Logger): GrpcServiceBinding {
  return implement(SnapshotsService, {
    prepare: async (req, ctx) => ({ mounts: wireMounts(await sn.prepare(ctx, req.key, req.parent, withLabels(req.labels))) }),
    view: async (req, ctx) => ({ mounts: wireMounts(await sn.view(ctx, req.key, req.parent, withLabels(req.labels))) }),
    mounts: async (req, ctx) => ({ mounts: wireMounts(await sn.mounts(ctx, req.key)) }),
    commit: async (req, ctx) => {
      await sn.commit(ctx, req.name, req.key, withLabels(req.labels));
      return {};
    },
    remove: async (req, ctx) => {
      await sn.remove(ctx, req.key);
      return {};
    },
    stat: async (req, ctx) => ({ info: wireInfo(await sn.stat(ctx, req.key)) }),
    update: async (req, ctx) => {
      const info = await sn.update(ctx, { name: req.info?.name ?? '', labels: req.info?.labels ?? {} }, req.updateMask ?? []);
      return { info: wireInfo(info) };
    },
    list: async (req, ctx, send) => {
      let block: WireInfo[] = [];
      await sn.walk(ctx, async (info) => {
        block.push(wireInfo(info));
        if (block.length >= LIST_BLOCK) {
          const full = block;
          block = [];
          await send({ info: full });
        }
      }, req.filters ?? []);
      if (block.length > 0) await send({ info: block });
    },
    usage: async (req, ctx) => {
      const u = await sn.usage(ctx, req.key);
      return { size: u.size, inodes: u.inodes };
    },
    cleanup: async (_req, ctx) => {
      if (!isCleaner(sn)) throw new NotImplementedError('snapshotter does not implement Cleanup method');
      await sn.cleanup(ctx);
      return {};
    },
  }, log);
}

export interface ServeOptions {
  log?: Logger;
  /** Owner of the socket (default: the current user). */
  uid?: number;
  gid?: number;
  /** Message size limits in bytes (default 16 MiB, as containerd). */
  maxMessageSize?: number;
}

/**
 * Listens on the unix socket `address` and serves `sn` there. A stale socket file is
 * replaced; a live one (someone else serving) is an error. close() stops the server and
 * removes the socket; closing the snapshotter stays with the caller.
 */
export async function serveSnapshotter(sn: Snapshotter, address: string, opts: ServeOptions = {}): Promise<RunningServer> {
  const log = opts.log ?? silentLogger;
  const max = opts.maxMessageSize ?? 16 << 20;
  const uid = opts.uid ?? (process.getuid?.() ?? 0);
  const gid = opts.gid ?? (process.getgid?.() ?? 0);
  return listenGrpc({
    address,
    uid,
    gid,
    maxRecvMessageSize: max,
    maxSendMessageSize: max,
    services: [snapshotsService(sn, log)],
    log,
  });
}
