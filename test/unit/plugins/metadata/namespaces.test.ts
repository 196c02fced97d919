/**
 * The namespace store on a real SQLite file: containerd's wording for a duplicate namespace
 * and for a namespace that still holds resources (in containerd's order, whatever order the
 * stores registered in).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../../../../plugins/metadata/sqlite/database.js';
import { SqliteNamespaceStore } from '../../../../plugins/metadata/sqlite/namespaces.js';
import { Code, codeOf } from '../../../../core/errdefs/errdefs.js';
import type { NamespaceResource } from '../../../../core/metadata/metadata.js';

test('duplicate and busy namespaces are reported as containerd reports them', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-ns-'));
  const db = openDatabase(join(dir, 'meta.db'));
  t.after(() => { db.close(); rmSync(dir, { recursive: true, force: true }); });
  let busy = true;
  const holding = (...what: string[]): NamespaceResource => ({ holdings: (ns) => (busy && ns === 'team' ? what : []) });
  // Registered as berth's stores register: content first, snapshotters last.
  const resources = [holding('blobs'), holding('containers'), holding('images'), holding('snapshots on "native" snapshotter', 'snapshots on "overlayfs" snapshotter')];
  const store = new SqliteNamespaceStore(db, () => resources);

  store.create('team', {});
  assert.throws(() => store.create('team', {}), (e: Error) => codeOf(e) === Code.ALREADY_EXISTS && e.message === 'namespace "team": already exists');
  assert.throws(() => store.delete('team'), (e: Error) => codeOf(e) === Code.FAILED_PRECONDITION &&
    e.message === 'namespace "team" must be empty, but it still has images, blobs, containers, ' +
      'snapshots on "native" snapshotter, snapshots on "overlayfs" snapshotter: failed precondition');
  busy = false;
  store.delete('team');
  assert.deepEqual(store.list().map((n) => n.name), []);
});
