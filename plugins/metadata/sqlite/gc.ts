/**
 * Mark and sweep over the metadata graph. Every source names its roots and its edges; the
 * collector marks what is reachable from the roots and hands each source the unreachable
 * nodes of its kind, all removed in one transaction so a crash never leaves half a sweep.
 * Work on backends (deleting blob files, snapshot dirs) runs after the commit: if it is
 * interrupted, the next collection finds the same orphans again.
 */
import type { Database } from 'better-sqlite3';
import type { GcNode, GcSource, GcStats } from '../../../core/metadata/metadata.js';

const keyOf = (n: GcNode) => `${n.kind}\u0000${n.namespace}\u0000${n.id}`;

export async function collect(db: Database, sources: readonly GcSource[], now = new Date()): Promise<GcStats & { removedNodes: GcNode[] }> {
  const started = performance.now();
  const byKind = new Map(sources.map((s) => [s.kind, s]));
  const removedBySource = new Map<GcSource, GcNode[]>();
  db.transaction(() => {
    const reachable = new Set<string>();
    // A node reached flat (through a gc.flat lease) and the same node reached normally are
    // traversed separately: only the normal visit follows its label references.
    const seen = new Set<string>();
    const queue: GcNode[] = [];
    const visit = (n: GcNode) => {
      const k = keyOf(n);
      const s = n.flat ? `${k}\u0000flat` : k;
      if (seen.has(s)) return;
      seen.add(s);
      reachable.add(k);
      queue.push(n);
    };
    for (const s of sources) for (const r of s.roots(now)) visit(r);
    while (queue.length) {
      const n = queue.pop()!;
      const src = byKind.get(n.kind);
      if (src) for (const ref of src.references(n)) visit(ref);
    }
    for (const s of sources) {
      const dead: GcNode[] = [];
      for (const n of s.all()) if (!reachable.has(keyOf(n))) dead.push(n);
      if (dead.length) {
        s.remove(dead);
        removedBySource.set(s, dead);
      }
    }
  }).immediate();
  // The pause is the marked-and-swept transaction (containerd's GCStats.Elapsed): backend
  // cleanup below runs with the metadata unlocked and does not count against the scheduler.
  const pauseMs = performance.now() - started;
  const removedNodes: GcNode[] = [];
  for (const [s, dead] of removedBySource) {
    removedNodes.push(...dead);
    await s.afterCollect?.(dead);
  }
  // Sources that clean backends even when nothing was removed this round (orphans from crashes).
  for (const s of sources) if (!removedBySource.has(s)) await s.afterCollect?.([]);
  return { removed: removedNodes.length, ms: pauseMs, removedNodes };
}
