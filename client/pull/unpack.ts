/**
 * Unpacking an image into snapshots, as containerd's client unpacker does, so that any
 * containerd client (ctr included) sees a finished unpack:
 *
 *  for each layer, with chain id C and parent chain id P:
 *    Snapshots.Stat(C) → present: skip;
 *    Snapshots.Prepare("extract-<nanos>-<rand> C", P, {containerd.io/snapshot.ref: C}) —
 *      ALREADY_EXISTS means another unpacker (or a remote snapshotter) provided C: skip;
 *    Diff.Apply(layer, mounts) → the diff id must equal the config's;
 *    Snapshots.Commit(C, key) — ALREADY_EXISTS: someone else won, fine;
 *    Content.Update(layer, containerd.io/uncompressed = diff id);
 *  then Content.Update(config, containerd.io/gc.ref.snapshot.<snapshotter> = top chain id).
 *
 * Layer i may be waited for (`ready(i)`) so that a pull can unpack while later layers are still
 * downloading. Everything runs under the connection's lease (callers use withLease).
 */
import { chainIDs, ImageLabel, type Descriptor } from '../../core/images/images.js';
import type { Connection } from '../connection.js';
import { isAlreadyExists, isNotFound } from '../../core/errdefs/errdefs.js';
import { DEFAULT_SNAPSHOTTER_LABEL } from '../../core/namespaces/namespaces.js';
import { ContentClient } from '../images/content.js';
import type { Layer } from '../images/image.js';
import { uniquePart } from './lease.js';

export const DEFAULT_SNAPSHOTTER = 'overlayfs';

/** The snapshotter to use: the explicit name, else the namespace's default label, else overlayfs. */
export async function resolveSnapshotter(conn: Connection, name?: string): Promise<string> {
  if (name) return name;
  const { NamespacesDefinition } = await import('../../api/gen/services/namespaces/v1/namespace.js');
  try {
    const res = await conn.service(NamespacesDefinition).get({ name: conn.namespace });
    const label = res.namespace?.labels?.[DEFAULT_SNAPSHOTTER_LABEL];
    if (label) return label;
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  return DEFAULT_SNAPSHOTTER;
}

export interface UnpackProgress {
  layer: number;
  chainID: string;
  state: 'exists' | 'extracting' | 'extracted';
  /** Milliseconds the apply took (extracted only). */
  ms?: number;
}

export interface UnpackOptions {
  snapshotter: string;
  /** Resolves when layer `i`'s blob is in content (pipelined pulls); default: already there. */
  ready?: (i: number) => Promise<void>;
  /** Extra labels for every extraction snapshot. */
  snapshotLabels?: Record<string, string>;
  onProgress?: (p: UnpackProgress) => void;
  signal?: AbortSignal;
}

/** Labels of a layer's annotations the snapshotter should see (containerd.io/snapshot/…). */
function inheritedLabels(annotations: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(annotations ?? {})) {
    if (k === ImageLabel.snapshotRef || k.startsWith('containerd.io/snapshot/')) out[k] = v;
  }
  return out;
}

/** Unpacks `layers` (config order) and labels `config`; returns the top chain id. */
export async function unpackLayers(conn: Connection, config: Descriptor, layers: readonly Layer[], opts: UnpackOptions): Promise<string> {
  const { SnapshotsDefinition } = await import('../../api/gen/services/snapshots/v1/snapshots.js');
  const { DiffDefinition } = await import('../../api/gen/services/diff/v1/diff.js');
  const sn = conn.service(SnapshotsDefinition);
  const diff = conn.service(DiffDefinition);
  const cs = new ContentClient(conn);
  const snapshotter = opts.snapshotter;
  const chains = chainIDs(layers.map((l) => l.diffID));
  const signal = opts.signal;

  const exists = async (key: string): Promise<boolean> => {
    try {
      await sn.stat({ snapshotter, key }, { signal });
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw new Error(`failed to stat snapshot ${key}: ${(err as Error).message}`, { cause: err });
    }
  };

  for (let i = 0; i < layers.length; i++) {
    signal?.throwIfAborted();
    const layer = layers[i]!;
    const chain = chains[i]!;
    const parent = i > 0 ? chains[i - 1]! : '';
    if (await exists(chain)) {
      opts.onProgress?.({ layer: i, chainID: chain, state: 'exists' });
      continue;
    }
    const labels = { ...inheritedLabels(layer.blob.annotations), ...(opts.snapshotLabels ?? {}), [ImageLabel.snapshotRef]: chain };
    let key = '';
    let mounts: { type: string; source: string; target: string; options: string[] }[] | undefined;
    let provided = false;
    for (let attempt = 1; attempt <= 3; attempt++) {
      key = `extract-${uniquePart()} ${chain}`;
      try {
        // Not cancelled mid-call: a Prepare the daemon completes after the client gave up
        // would leave a snapshot nobody removes until the lease goes.
        mounts = (await sn.prepare({ snapshotter, key, parent, labels })).mounts;
        break;
      } catch (err) {
        if (!isAlreadyExists(err)) throw new Error(`failed to prepare extraction snapshot ${JSON.stringify(key)}: ${(err as Error).message}`, { cause: err });
        if (await exists(chain)) {
          provided = true;
          break;
        }
      }
    }
    if (provided) {
      opts.onProgress?.({ layer: i, chainID: chain, state: 'exists' });
      continue;
    }
    if (!mounts) throw new Error(`unable to prepare extraction snapshot for ${chain}`);
    const abort = () => sn.remove({ snapshotter, key }).catch(() => undefined);
    try {
      signal?.throwIfAborted();
      if (opts.ready) await opts.ready(i);
      opts.onProgress?.({ layer: i, chainID: chain, state: 'extracting' });
      const started = performance.now();
      const res = await diff.apply({
        diff: { mediaType: layer.blob.mediaType, digest: layer.blob.digest, size: layer.blob.size, annotations: layer.blob.annotations ?? {} },
        mounts,
      }, { signal });
      if (res.applied?.digest !== layer.diffID) {
        throw new Error(`wrong diff id calculated on extraction ${JSON.stringify(layer.diffID)} (got ${res.applied?.digest ?? 'nothing'})`);
      }
      try {
        await sn.commit({ snapshotter, name: chain, key, labels }, { signal });
      } catch (err) {
        if (!isAlreadyExists(err)) throw new Error(`failed to commit snapshot ${key}: ${(err as Error).message}`, { cause: err });
        await abort();
      }
      await cs.setLabels(layer.blob.digest, { [ImageLabel.uncompressed]: layer.diffID });
      opts.onProgress?.({ layer: i, chainID: chain, state: 'extracted', ms: performance.now() - started });
    } catch (err) {
      await abort();
      if (err instanceof Error && /^(wrong diff id|failed to commit)/.test(err.message)) throw err;
      throw new Error(`failed to extract layer ${layer.diffID}: ${(err as Error).message}`, { cause: err });
    }
  }
  const top = chains[chains.length - 1] ?? '';
  if (top) await cs.setLabels(config.digest, { [`${ImageLabel.gcRefSnapshotPrefix}${snapshotter}`]: top });
  return top;
}
