import assert from 'node:assert/strict';
import { link, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Mutex } from '../../../../core/snapshots/mutex.js';
import { diskUsage } from '../../../../core/snapshots/usage.js';
import { snapshotFilterAdaptor, Kind, kindString, parseKind, inheritedLabels } from '../../../../core/snapshots/snapshotter.js';
import { parseFilters } from '../../../../core/filters/filters.js';

describe('Mutex', () => {
  it('runs holders one at a time, in order, releasing on failure', async () => {
    const m = new Mutex();
    const order: string[] = [];
    const slow = m.run(async () => { order.push('a+'); await new Promise((r) => setTimeout(r, 10)); order.push('a-'); });
    const failing = m.run(() => { order.push('b'); throw new Error('boom'); });
    const last = m.run(async () => { order.push('c'); return 7; });
    await slow;
    await assert.rejects(failing, /boom/);
    assert.equal(await last, 7);
    assert.deepEqual(order, ['a+', 'a-', 'b', 'c']);
    assert.equal(m.busy, false);
  });
});

describe('diskUsage', () => {
  it('counts every inode once with its allocated blocks', async () => {
    const d = await mkdtemp(join(tmpdir(), 'berth-du-'));
    try {
      const empty = await diskUsage(d);
      assert.equal(empty.inodes, 1, 'the root counts');
      await writeFile(join(d, 'f'), Buffer.alloc(64 * 1024, 1));
      await link(join(d, 'f'), join(d, 'g'));
      await mkdir(join(d, 'sub'));
      const u = await diskUsage(d);
      assert.equal(u.inodes, 3);
      assert.ok(u.size >= empty.size + 64 * 1024);
      await assert.rejects(diskUsage(join(d, 'missing')), { code: 'ENOENT' });
    } finally {
      await rm(d, { recursive: true });
    }
  });
});

describe('snapshot info helpers', () => {
  it('names kinds and parses them back', () => {
    assert.deepEqual([Kind.View, Kind.Active, Kind.Committed, Kind.Unknown].map(kindString), ['View', 'Active', 'Committed', 'Unknown']);
    assert.equal(parseKind('COMMITTED'), Kind.Committed);
    assert.equal(parseKind('x'), Kind.Unknown);
  });

  it('matches filters on name, parent, kind and labels', () => {
    const info = { kind: Kind.Active, name: 'n', parent: '', labels: { 'a.b': 'c' }, createdAt: new Date(), updatedAt: new Date() };
    const m = (f: string) => parseFilters([f]).match(snapshotFilterAdaptor(info));
    assert.ok(m('kind==active'));
    assert.ok(!m('parent!=""'));
    assert.ok(m('labels."a.b"==c'));
    assert.ok(m('name~=^n$'));
    assert.ok(!m('labels.z'));
  });

  it('passes only snapshot.ref and containerd.io/snapshot/ labels through', () => {
    assert.deepEqual(inheritedLabels({
      'containerd.io/snapshot.ref': 'r', 'containerd.io/snapshot/x': 'y', 'containerd.io/gc.root': 'z', other: 'o',
    }), { 'containerd.io/snapshot.ref': 'r', 'containerd.io/snapshot/x': 'y' });
  });
});
