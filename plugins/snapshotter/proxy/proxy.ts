/**
 * A snapshotter served by another process over containerd's snapshots gRPC API (a proxy
 * plugin). Every request names the snapshotter and carries the caller's namespace, as
 * containerd's proxy does; the peer's error codes come back as errdefs classes, and a peer
 * that cannot be reached is an UNAVAILABLE error naming the proxy (see plugins/proxy/peer.ts).
 */
import type { Mount } from '../../../core/mount/types.js';
import type { RequestContext } from '../../../core/namespaces/namespaces.js';
import { Kind, type SnapshotInfo, type SnapshotOptions, type Snapshotter, type Usage } from '../../../core/snapshots/snapshotter.js';
import { SnapshotsDefinition, Kind as WireKind, type Info } from '../../../api/gen/services/snapshots/v1/snapshots.js';
import type { Peer } from '../../proxy/peer.js';

function toKind(k: WireKind | undefined): Kind {
  switch (k) {
    case WireKind.VIEW: return Kind.View;
    case WireKind.ACTIVE: return Kind.Active;
    case WireKind.COMMITTED: return Kind.Committed;
    default: return Kind.Unknown;
  }
}

const toInfo = (i: Info | undefined): SnapshotInfo => ({
  kind: toKind(i?.kind),
  name: i?.name ?? '',
  parent: i?.parent ?? '',
  labels: { ...(i?.labels ?? {}) },
  createdAt: i?.createdAt ?? new Date(0),
  updatedAt: i?.updatedAt ?? new Date(0),
});

const toMounts = (ms: { type: string; source: string; target: string; options: string[] }[]): Mount[] =>
  ms.map((m) => ({ type: m.type, source: m.source, ...(m.target ? { target: m.target } : {}), options: [...m.options] }));

export class ProxySnapshotter implements Snapshotter {
  constructor(private readonly name: string, private readonly peer: Peer) {}

  private unary<T>(fn: (api: import('../../../client/connection.js').ServiceClient<typeof SnapshotsDefinition>) => Promise<T>): Promise<T> {
    return this.peer.call(SnapshotsDefinition, fn);
  }

  async stat(ctx: RequestContext, key: string): Promise<SnapshotInfo> {
    return toInfo((await this.unary((api) => api.stat({ snapshotter: this.name, key }, this.peer.options(ctx)))).info);
  }

  async update(ctx: RequestContext, info: Pick<SnapshotInfo, 'name' | 'labels'>, fieldpaths: readonly string[] = []): Promise<SnapshotInfo> {
    const res = await this.unary((api) =>
      api.update({ snapshotter: this.name, info: { name: info.name, labels: info.labels }, updateMask: [...fieldpaths] }, this.peer.options(ctx)));
    return toInfo(res.info);
  }

  async usage(ctx: RequestContext, key: string): Promise<Usage> {
    const u = await this.unary((api) => api.usage({ snapshotter: this.name, key }, this.peer.options(ctx)));
    return { size: u.size, inodes: u.inodes };
  }

  async mounts(ctx: RequestContext, key: string): Promise<Mount[]> {
    return toMounts((await this.unary((api) => api.mounts({ snapshotter: this.name, key }, this.peer.options(ctx)))).mounts);
  }

  async prepare(ctx: RequestContext, key: string, parent: string, opts?: SnapshotOptions): Promise<Mount[]> {
    const res = await this.unary((api) =>
      api.prepare({ snapshotter: this.name, key, parent, labels: opts?.labels ?? {} }, this.peer.options(ctx)));
    return toMounts(res.mounts);
  }

  async view(ctx: RequestContext, key: string, parent: string, opts?: SnapshotOptions): Promise<Mount[]> {
    const res = await this.unary((api) =>
      api.view({ snapshotter: this.name, key, parent, labels: opts?.labels ?? {} }, this.peer.options(ctx)));
    return toMounts(res.mounts);
  }

  async commit(ctx: RequestContext, name: string, key: string, opts?: SnapshotOptions): Promise<void> {
    await this.unary((api) => api.commit({ snapshotter: this.name, name, key, labels: opts?.labels ?? {} }, this.peer.options(ctx)));
  }

  async remove(ctx: RequestContext, key: string): Promise<void> {
    await this.unary((api) => api.remove({ snapshotter: this.name, key }, this.peer.options(ctx)));
  }

  async walk(ctx: RequestContext, fn: (info: SnapshotInfo) => void | Promise<void>, filters: readonly string[] = []): Promise<void> {
    const batches = this.peer.stream(SnapshotsDefinition, (api) => api.list({ snapshotter: this.name, filters: [...filters] }, this.peer.options(ctx)));
    for await (const batch of batches) {
      for (const info of batch.info) await fn(toInfo(info));
    }
  }

  /**
   * Lets the peer reclaim space. A peer without Cleanup (containerd's own snapshots service
   * hides it) answers UNIMPLEMENTED; that error is passed on, and garbage collection — the
   * caller — treats it as "nothing to do", as containerd's proxy does.
   */
  async cleanup(ctx: RequestContext): Promise<void> {
    await this.unary((api) => api.cleanup({ snapshotter: this.name }, this.peer.options(ctx)));
  }

  async close(): Promise<void> {
    this.peer.close();
  }
}
