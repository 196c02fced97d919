import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { codeOf, Code, messageOf } from '../../../../core/errdefs/errdefs.js';
import { applyLabelPaths, MetaStore, wrapError } from '../../../../core/snapshots/storage.js';
import { Kind } from '../../../../core/snapshots/snapshotter.js';

const fails = (fn: () => unknown, code: number, message: string) => {
  assert.throws(fn, (e) => {
    assert.equal(codeOf(e), code, messageOf(e));
    assert.equal(messageOf(e), message);
    return true;
  });
};

describe('snapshot storage (MetaStore)', () => {
  let dir: string;
  let ms: MetaStore;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-storage-'));
    ms = new MetaStore(join(dir, 'metadata.db'));
  });
  afterEach(() => {
    ms.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates a missing database on first use, and opens an existing one at once', () => {
    const path = join(dir, 'metadata.db');
    assert.equal(existsSync(path), false, 'nothing on disk before the first use');
    assert.equal(ms.idMap().size, 0, 'no database: no snapshots, still nothing created');
    assert.equal(existsSync(path), false);
    ms.createSnapshot(Kind.Active, 'a', '');
    assert.equal(existsSync(path), true);
    const again = new MetaStore(path);
    try {
      assert.equal(again.getInfo('a').info.kind, Kind.Active);
    } finally {
      again.close();
    }
    // An existing file that is not a database fails at construction (the plugin's boot), not later.
    const bad = join(dir, 'bad.db');
    writeFileSync(bad, 'not a database, but long enough to have a header page of its own..............');
    assert.throws(() => new MetaStore(bad), (e: Error & { code?: string }) => e.message === `${bad}: file is not a database` && e.code === 'SQLITE_NOTADB');
  });

  it('creates, commits and chains snapshots, parents nearest first', () => {
    const a = ms.createSnapshot(Kind.Active, 'a', '', { x: '1' });
    assert.deepEqual(a, { id: '1', kind: Kind.Active, parentIds: [] });
    assert.equal(ms.commitActive('a', 'c1', { size: 10, inodes: 2 }, { y: '2' }), '1', 'commit keeps the id');
    ms.createSnapshot(Kind.Active, 'b', 'c1');
    ms.commitActive('b', 'c2', { size: 0, inodes: 0 });
    const v = ms.createSnapshot(Kind.View, 'v', 'c2');
    assert.deepEqual(v, { id: '3', kind: Kind.View, parentIds: ['2', '1'] });
    assert.deepEqual(ms.getSnapshot('v'), v);
    const info = ms.getInfo('c1');
    assert.equal(info.info.kind, Kind.Committed);
    assert.deepEqual(info.info.labels, { y: '2' }, 'commit replaces labels');
    assert.deepEqual(info.usage, { size: 10, inodes: 2 });
    assert.equal(ms.getInfo('c2').info.parent, 'c1');
  });

  it('never hands out an id twice', () => {
    ms.createSnapshot(Kind.Active, 'a', '');
    ms.createSnapshot(Kind.Active, 'b', '');
    ms.remove('b');
    assert.equal(ms.createSnapshot(Kind.Active, 'c', '').id, '3');
    // Reopening keeps the sequence.
    ms.close();
    ms = new MetaStore(join(dir, 'metadata.db'));
    ms.remove('c');
    assert.equal(ms.createSnapshot(Kind.Active, 'd', '').id, '4');
  });

  it('reports containerd storage errors', () => {
    ms.createSnapshot(Kind.Active, 'a', '');
    ms.createSnapshot(Kind.Active, 'tmp', '');
    ms.commitActive('tmp', 'c', { size: 0, inodes: 0 });
    ms.createSnapshot(Kind.View, 'v', 'c');
    fails(() => ms.createSnapshot(Kind.Active, 'a', ''), Code.ALREADY_EXISTS, 'snapshot a: already exists');
    fails(() => ms.createSnapshot(Kind.Active, 'x', 'nope'), Code.NOT_FOUND, 'missing parent "nope" bucket: not found');
    fails(() => ms.createSnapshot(Kind.Active, 'x', 'a'), Code.INVALID_ARGUMENT, 'parent "a" is not committed snapshot: invalid argument');
    fails(() => ms.createSnapshot(Kind.Committed, 'x', ''), Code.INVALID_ARGUMENT,
      'snapshot type 3 invalid; only snapshots of type Active or View can be created: invalid argument');
    fails(() => ms.getInfo('nope'), Code.NOT_FOUND, 'snapshot does not exist: not found');
    fails(() => ms.getSnapshot('c'), Code.FAILED_PRECONDITION, 'requested snapshot c not active or view: failed precondition');
    fails(() => ms.commitActive('a', 'c', { size: 0, inodes: 0 }), Code.ALREADY_EXISTS, 'committed snapshot c: already exists');
    fails(() => ms.commitActive('nope', 'c9', { size: 0, inodes: 0 }), Code.NOT_FOUND, 'failed to get active snapshot "nope": not found');
    fails(() => ms.commitActive('v', 'c9', { size: 0, inodes: 0 }), Code.FAILED_PRECONDITION, 'snapshot "v" is not active: failed precondition');
    fails(() => ms.remove('c'), Code.FAILED_PRECONDITION, 'cannot remove snapshot with child: failed precondition');
    fails(() => ms.remove('nope'), Code.NOT_FOUND, 'snapshot nope: not found');
    fails(() => ms.updateInfo({ name: 'a', labels: {} }, ['parent']), Code.INVALID_ARGUMENT, 'cannot update "parent" field on snapshot "a": invalid argument');
    // Failed calls wrote nothing.
    assert.deepEqual(ms.walkInfo().map((i) => i.name), ['a', 'c', 'v']);
  });

  it('updates labels by field path and refreshes only the update time', async () => {
    ms.createSnapshot(Kind.Active, 'a', '', { l1: 'v1', l2: 'v2' });
    const created = ms.getInfo('a').info.createdAt.getTime();
    await new Promise((r) => setTimeout(r, 5));
    const u = ms.updateInfo({ name: 'a', labels: { l1: 'x', l3: 'y' } }, ['labels.l1', 'labels.l2']);
    assert.deepEqual(u.labels, { l1: 'x' });
    assert.equal(u.createdAt.getTime(), created);
    assert.ok(u.updatedAt.getTime() > created);
    assert.deepEqual(ms.updateInfo({ name: 'a', labels: { z: '1' } }).labels, { z: '1' });
    assert.deepEqual(ms.updateInfo({ name: 'a', labels: { q: '1', e: '' } }, ['labels']).labels, { q: '1' });
  });

  it('walks with filters and maps ids', () => {
    ms.createSnapshot(Kind.Active, 'p-a', '');
    ms.commitActive('p-a', 'p', { size: 0, inodes: 0 }, { l: '1' });
    ms.createSnapshot(Kind.Active, 'a', 'p', { l: '2' });
    ms.createSnapshot(Kind.View, 'v', 'p');
    const names = (f: string[]) => ms.walkInfo(f).map((i) => i.name);
    assert.deepEqual(names(['kind==active']), ['a']);
    assert.deepEqual(names(['parent==p']), ['a', 'v']);
    assert.deepEqual(names(['labels.l']), ['a', 'p']);
    assert.deepEqual(names(['parent!=""', 'name==p']), ['a', 'p', 'v']);
    assert.deepEqual([...ms.idMap()].map(([id, v]) => [id, v.key, v.kind]), [['1', 'p', Kind.Committed], ['2', 'a', Kind.Active], ['3', 'v', Kind.View]]);
  });

  it('closes idempotently', () => {
    ms.close();
    ms.close();
    assert.equal(ms.isClosed, true);
  });
});

describe('storage helpers', () => {
  it('applies label field paths like containerd', () => {
    assert.deepEqual(applyLabelPaths({ a: '1' }, { b: '2' }, undefined, 'n'), { b: '2' });
    assert.deepEqual(applyLabelPaths({ a: '1', b: '1' }, { b: '2' }, ['labels.b', 'labels.a'], 'n'), { b: '2' });
    assert.throws(() => applyLabelPaths({}, {}, ['name'], 'n'), (e) => codeOf(e) === Code.INVALID_ARGUMENT);
  });

  it('wraps errors keeping their class', () => {
    const e = wrapError('failed to create snapshot', (() => { try { new MetaStore(':memory:').getInfo('x'); } catch (err) { return err; } })());
    assert.equal(codeOf(e), Code.NOT_FOUND);
    assert.equal(e.message, 'failed to create snapshot: snapshot does not exist: not found');
    assert.equal(codeOf(wrapError('x', new Error('plain'))), Code.UNKNOWN);
  });
});
