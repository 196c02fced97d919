/**
 * Label rules shared by every labelled object, and the gc reference labels clients set.
 */
import { InvalidArgumentError } from '../errdefs/errdefs.js';
import type { Labels } from './metadata.js';

/** containerd limits a label's key plus value to 4096 bytes. */
export const MAX_LABEL_SIZE = 4096;

export function validateLabels(labels: Labels | undefined): void {
  for (const [k, v] of Object.entries(labels ?? {})) {
    if (!k) throw new InvalidArgumentError('label key must not be empty');
    if (Buffer.byteLength(k) + Buffer.byteLength(v) > MAX_LABEL_SIZE) {
      throw new InvalidArgumentError(`label key and value greater than maximum size (${MAX_LABEL_SIZE} bytes), key: ${k.slice(0, 10)}`);
    }
  }
}

export const GcLabel = Object.freeze({
  root: 'containerd.io/gc.root',
  expire: 'containerd.io/gc.expire',
  flat: 'containerd.io/gc.flat',
  refContent: 'containerd.io/gc.ref.content',
  refSnapshotPrefix: 'containerd.io/gc.ref.snapshot.',
});

/** Digests a label set references (`containerd.io/gc.ref.content`, `.…` or `/…`). */
export function contentRefs(labels: Labels): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(labels)) {
    if (k === GcLabel.refContent || k.startsWith(`${GcLabel.refContent}.`) || k.startsWith(`${GcLabel.refContent}/`)) out.push(v);
  }
  return out;
}

/** Snapshots a label set references: `containerd.io/gc.ref.snapshot.<snapshotter>[/…]` → key. */
export function snapshotRefs(labels: Labels): { snapshotter: string; key: string }[] {
  const out: { snapshotter: string; key: string }[] = [];
  for (const [k, v] of Object.entries(labels)) {
    if (!k.startsWith(GcLabel.refSnapshotPrefix)) continue;
    const snapshotter = k.slice(GcLabel.refSnapshotPrefix.length).split('/')[0]!;
    if (snapshotter) out.push({ snapshotter, key: v });
  }
  return out;
}

/** Applies a containerd update field mask to labels (`labels` replaces all, `labels.k` one key). */
export function applyLabelMask(current: Labels, next: Labels, paths: readonly string[] | undefined): Labels {
  if (!paths || paths.length === 0) return { ...next };
  const out = { ...current };
  for (const p of paths) {
    if (p === 'labels') return { ...next };
    if (!p.startsWith('labels.')) throw new InvalidArgumentError(`cannot update ${JSON.stringify(p)} field`);
    const key = p.slice('labels.'.length);
    if (next[key] !== undefined && next[key] !== '') out[key] = next[key]!;
    else delete out[key];
  }
  return out;
}
