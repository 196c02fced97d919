/**
 * The behavioural suite every snapshotter must pass, following containerd's
 * snapshots/testsuite: real mounts, real files. An implementation's test file calls
 * `snapshotterSuite(name, factory)` and nothing else.
 *
 * Each check gets a fresh temporary directory holding `root/` (handed to the factory) and
 * `work/` (mount points and scratch trees). Whatever a check mounts below it is unmounted
 * afterwards, pass or fail.
 *
 * Trees are compared entry by entry: type, permission bits, owner, size and content of
 * files, link targets, device numbers, extended attributes (overlay's private ones are
 * invisible through a mount) and which paths share an inode. Times are compared only where
 * a check says so.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import {
  chmod, cp, lchown, link, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rename as fsRename, rm, stat, symlink, writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { codeOf, Code } from '../errdefs/errdefs.js';
import { mountAll, unmountAll } from '../mount/mount.js';
import type { Mount } from '../mount/types.js';
import type { RequestContext } from '../namespaces/namespaces.js';
import { lgetxattr, llistxattr, lsetxattr, makedev, mknod, S_IFCHR, S_IFIFO } from '../sys/fsx.js';
import { Kind, type SnapshotInfo, type SnapshotOptions, type Snapshotter } from './snapshotter.js';

// ---------------------------------------------------------------- appliers

/** A change to a directory tree, applied the same way to a snapshot mount and a plain directory. */
export type Applier = (root: string) => Promise<void>;

export const applyAll = (...as: Applier[]): Applier => async (root) => {
  for (const a of as) await a(root);
};

export const createFile = (p: string, content: string | Buffer, mode: number): Applier => async (root) => {
  const f = join(root, p);
  await writeFile(f, content);
  await chmod(f, mode);
};

export const createDir = (p: string, mode: number): Applier => async (root) => {
  const d = join(root, p);
  await mkdir(d);
  await chmod(d, mode);
};

export const removeAll = (p: string): Applier => (root) => rm(join(root, p), { recursive: true, force: true });

export const hardlink = (oldPath: string, newPath: string): Applier => (root) => link(join(root, oldPath), join(root, newPath));

export const symlinkTo = (target: string, p: string): Applier => (root) => symlink(target, join(root, p));

export const chown = (p: string, uid: number, gid: number): Applier => (root) => lchown(join(root, p), uid, gid);

export const chmodPath = (p: string, mode: number): Applier => (root) => chmod(join(root, p), mode);

export const setXattr = (p: string, name: string, value: string): Applier => async (root) => lsetxattr(join(root, p), name, value);

export const mkfifo = (p: string, mode: number): Applier => async (root) => {
  mknod(join(root, p), S_IFIFO | mode);
  await chmod(join(root, p), mode);
};

export const mkchar = (p: string, mode: number, major: number, minor: number): Applier => async (root) => {
  mknod(join(root, p), S_IFCHR | mode, makedev(major, minor));
  await chmod(join(root, p), mode);
};

/**
 * rename(2), falling back like mv(1) when the kernel answers EXDEV: overlayfs without
 * redirect_dir cannot rename a directory that comes from a lower layer in place.
 */
export const renamePath = (from: string, to: string): Applier => async (root) => {
  const a = join(root, from);
  const b = join(root, to);
  try {
    await fsRename(a, b);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await rm(b, { recursive: true, force: true });
    await cp(a, b, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    await rm(a, { recursive: true, force: true });
  }
};

// ---------------------------------------------------------------- tree comparison

interface Entry {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  digest?: string;
  target?: string;
  rdev?: number;
  xattrs: Record<string, string>;
  /** Earlier path with the same inode (hard link). */
  linkOf?: string;
}

const visibleXattr = (name: string) => !name.startsWith('trusted.overlay.') && !name.startsWith('security.');

async function manifest(root: string): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  const inodes = new Map<number, string>();
  const walk = async (dir: string, rel: string) => {
    for (const name of (await readdir(dir)).sort()) {
      const p = join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = await lstat(p);
      const xattrs: Record<string, string> = {};
      for (const x of llistxattr(p).filter(visibleXattr).sort()) xattrs[x] = lgetxattr(p, x)?.toString('base64') ?? '';
      const e: Entry = { type: '', mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, xattrs };
      if (st.isDirectory()) e.type = 'dir';
      else if (st.isSymbolicLink()) {
        e.type = 'symlink';
        e.target = await readlink(p);
        e.mode = 0;
      } else if (st.isFile()) {
        e.type = 'file';
        e.size = st.size;
        e.digest = createHash('sha256').update(await readFile(p)).digest('hex');
        if (st.nlink > 1) {
          const first = inodes.get(st.ino);
          if (first) e.linkOf = first;
          else inodes.set(st.ino, r);
        }
      } else {
        e.type = st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : 'socket';
        e.rdev = st.rdev;
      }
      out.set(r, e);
      if (e.type === 'dir') await walk(p, r);
    }
  };
  await walk(root, '');
  return out;
}

/** Asserts that two trees hold the same entries (the roots themselves are not compared). */
export async function checkDirectoryEqual(expected: string, actual: string): Promise<void> {
  const [a, b] = await Promise.all([manifest(expected), manifest(actual)]);
  const problems: string[] = [];
  for (const [p, e] of a) {
    const f = b.get(p);
    if (!f) problems.push(`missing ${p}`);
    else if (JSON.stringify(e) !== JSON.stringify(f)) problems.push(`differs ${p}: expected ${JSON.stringify(e)}, got ${JSON.stringify(f)}`);
  }
  for (const p of b.keys()) if (!a.has(p)) problems.push(`unexpected ${p}`);
  if (problems.length) assert.fail(`directory ${actual} differs from ${expected}:\n  ${problems.slice(0, 20).join('\n  ')}`);
}

// ---------------------------------------------------------------- the suite

export type SnapshotterFactory = (root: string) => Promise<Snapshotter>;

export interface SuiteOptions {
  /** Directory under which each check makes its temporary directory (default: os.tmpdir()). */
  base?: () => string;
  /** Removes a check's temporary directory (default: rm -rf; btrfs discards its whole filesystem instead). */
  removeTemp?: (dir: string) => Promise<void>;
  /** Layers in the long-chain check (default 128, as containerd's suite). */
  chainLength?: number;
}

type Check = (ctx: RequestContext, sn: Snapshotter, work: string) => Promise<void>;

const rootOpt = (): SnapshotOptions => ({ labels: { 'containerd.io/gc.root': new Date().toISOString() } });

let counter = 0;
const unique = (prefix: string) => `${prefix}-${process.pid}-${++counter}`;

/** Mounts `mounts` at `target`, runs `fn`, always unmounts. */
async function withMounted<T>(mounts: Mount[], target: string, fn: () => Promise<T>): Promise<T> {
  await mkdir(target, { recursive: true });
  await mountAll(mounts, target);
  try {
    return await fn();
  } finally {
    await unmountAll(target);
  }
}

async function prepareMount(ctx: RequestContext, sn: Snapshotter, work: string, name: string, parent: string): Promise<string> {
  const preparing = join(work, name);
  await mkdir(preparing, { recursive: true });
  const mounts = await sn.prepare(ctx, preparing, parent, rootOpt());
  assert.ok(mounts.length > 0, 'expected mounts to have entries');
  await mountAll(mounts, preparing);
  return preparing;
}

/** Prepares on `parent`, applies `a` through a mount, commits; returns the committed name. */
async function createSnapshot(ctx: RequestContext, sn: Snapshotter, parent: string, work: string, a: Applier): Promise<string> {
  const name = unique('layer');
  const prepare = `${name}-prepare`;
  const mounts = await sn.prepare(ctx, prepare, parent, rootOpt());
  const td = await mkdtemp(join(work, 'prepare-'));
  await withMounted(mounts, td, () => a(td));
  await rm(td, { recursive: true });
  await sn.commit(ctx, name, prepare, rootOpt());
  return name;
}

/** Mounts a view of `name` and compares it with the tree `check`. */
async function checkSnapshot(ctx: RequestContext, sn: Snapshotter, work: string, name: string, check: string): Promise<void> {
  const view = `${name}-view`;
  const mounts = await sn.view(ctx, view, name, rootOpt());
  const td = await mkdtemp(join(work, 'check-'));
  try {
    await withMounted(mounts, td, () => checkDirectoryEqual(check, td));
  } finally {
    await rm(td, { recursive: true, force: true });
    await sn.remove(ctx, view);
  }
}

/**
 * Builds a chain of committed snapshots, one applier each, and after every layer compares
 * a view of it with the same appliers run on a plain directory.
 */
async function checkSnapshots(ctx: RequestContext, sn: Snapshotter, work: string, ...appliers: Applier[]): Promise<string[]> {
  const flat = await mkdtemp(join(work, 'flat-'));
  const names: string[] = [];
  let parent = '';
  for (const a of appliers) {
    parent = await createSnapshot(ctx, sn, parent, work, a);
    await a(flat);
    await checkSnapshot(ctx, sn, work, parent, flat);
    names.push(parent);
  }
  return names;
}

async function collect(ctx: RequestContext, sn: Snapshotter, filters?: string[]): Promise<SnapshotInfo[]> {
  const out: SnapshotInfo[] = [];
  await sn.walk(ctx, (i) => {
    out.push(i);
  }, filters);
  return out;
}

async function expectCode(p: Promise<unknown>, code: Code, what: string): Promise<void> {
  try {
    await p;
  } catch (err) {
    assert.equal(codeOf(err), code, `${what}: expected code ${code}, got ${codeOf(err)} (${(err as Error).message})`);
    return;
  }
  assert.fail(`${what}: expected an error with code ${code}`);
}

// c1 (committed) ← c2 (committed) ← a1 (active), v1 (view); a2 active and v2 view without parent.
async function baseSnapshots(ctx: RequestContext, sn: Snapshotter): Promise<void> {
  await sn.prepare(ctx, 'c1-a', '', rootOpt());
  await sn.commit(ctx, 'c1', 'c1-a', rootOpt());
  await sn.prepare(ctx, 'c2-a', 'c1', rootOpt());
  await sn.commit(ctx, 'c2', 'c2-a', rootOpt());
  await sn.prepare(ctx, 'a1', 'c2', rootOpt());
  await sn.prepare(ctx, 'a2', '', rootOpt());
  await sn.view(ctx, 'v1', 'c2', rootOpt());
  await sn.view(ctx, 'v2', '', rootOpt());
}

const checks: Record<string, Check> = {
  async basic(ctx, sn, work) {
    const initial = applyAll(
      createFile('foo', 'foo\n', 0o777),
      createDir('a', 0o755),
      createDir('a/b', 0o755),
      createDir('a/b/c', 0o755),
    );
    const diff = applyAll(
      createFile('bar', 'bar\n', 0o777),
      createFile('foo', 'bar\n', 0o777),
      removeAll('a/b'),
    );
    const preparing = await prepareMount(ctx, sn, work, 'preparing', '');
    await initial(preparing);
    await unmountAll(preparing);

    const committed = join(work, 'committed');
    await sn.commit(ctx, committed, preparing, rootOpt());
    const si = await sn.stat(ctx, committed);
    assert.equal(si.parent, '');
    assert.equal(si.kind, Kind.Committed);
    await expectCode(sn.stat(ctx, preparing), Code.NOT_FOUND, 'active key after commit');

    const next = await prepareMount(ctx, sn, work, 'nextlayer', committed);
    const expectInitial = await mkdtemp(join(work, 'expect-'));
    await initial(expectInitial);
    await checkDirectoryEqual(expectInitial, next);
    await diff(next);
    await unmountAll(next);

    const ni = await sn.stat(ctx, next);
    assert.equal(ni.parent, committed);
    assert.equal(ni.kind, Kind.Active);

    const nextCommitted = join(work, 'committed-next');
    await sn.commit(ctx, nextCommitted, next, rootOpt());
    const si2 = await sn.stat(ctx, nextCommitted);
    assert.equal(si2.parent, committed);
    assert.equal(si2.kind, Kind.Committed);
    await expectCode(sn.stat(ctx, next), Code.NOT_FOUND, 'active key after commit');

    const walked = new Map((await collect(ctx, sn)).map((i) => [i.name, i]));
    assert.deepEqual(walked.get(si.name), si);
    assert.deepEqual(walked.get(si2.name), si2);

    const nextnext = join(work, 'nextnextlayer');
    await mkdir(nextnext);
    const mounts = await sn.view(ctx, nextnext, nextCommitted, rootOpt());
    const expectBoth = await mkdtemp(join(work, 'expect-'));
    await applyAll(initial, diff)(expectBoth);
    await withMounted(mounts, nextnext, () => checkDirectoryEqual(expectBoth, nextnext));

    await sn.remove(ctx, nextnext);
    await expectCode(sn.remove(ctx, committed), Code.FAILED_PRECONDITION, 'remove of a parent');
    await sn.remove(ctx, nextCommitted);
    await sn.remove(ctx, committed);
  },

  async statActive(ctx, sn, work) {
    const preparing = await prepareMount(ctx, sn, work, 'preparing', '');
    try {
      await writeFile(join(preparing, 'foo'), 'foo\n');
      const si = await sn.stat(ctx, preparing);
      assert.equal(si.name, preparing);
      assert.equal(si.kind, Kind.Active);
      assert.equal(si.parent, '');
    } finally {
      await unmountAll(preparing);
    }
  },

  async statCommitted(ctx, sn, work) {
    const preparing = await prepareMount(ctx, sn, work, 'preparing', '');
    await writeFile(join(preparing, 'foo'), 'foo\n');
    await unmountAll(preparing);
    const committed = join(work, 'committed');
    await sn.commit(ctx, committed, preparing, rootOpt());
    const si = await sn.stat(ctx, committed);
    assert.equal(si.name, committed);
    assert.equal(si.kind, Kind.Committed);
    assert.equal(si.parent, '');
  },

  async transitivity(ctx, sn, work) {
    const preparing = await prepareMount(ctx, sn, work, 'preparing', '');
    await writeFile(join(preparing, 'foo'), 'foo\n');
    await unmountAll(preparing);
    const snapA = join(work, 'snapA');
    await sn.commit(ctx, snapA, preparing, rootOpt());
    const next = await prepareMount(ctx, sn, work, 'next', snapA);
    await writeFile(join(next, 'foo'), 'foo bar\n');
    await unmountAll(next);
    const snapB = join(work, 'snapB');
    await sn.commit(ctx, snapB, next, rootOpt());
    const siA = await sn.stat(ctx, snapA);
    const siB = await sn.stat(ctx, snapB);
    const siParentB = await sn.stat(ctx, siB.parent);
    assert.equal(siA.parent, '');
    assert.equal(siB.parent, snapA);
    assert.equal(siParentB.parent, '');
  },

  async duplicateKeys(ctx, sn, work) {
    await sn.prepare(ctx, 'pv-a', '', rootOpt());
    const snapA = join(work, 'snapA');
    await sn.commit(ctx, snapA, 'pv-a', rootOpt());
    await sn.prepare(ctx, 'newlayer', snapA, rootOpt());
    await expectCode(sn.view(ctx, 'newlayer', snapA, rootOpt()), Code.ALREADY_EXISTS, 'view over an active key');
    await sn.prepare(ctx, 'prepLayer', snapA, rootOpt());
    await expectCode(sn.prepare(ctx, 'prepLayer', snapA, rootOpt()), Code.ALREADY_EXISTS, 'second prepare');
    await sn.view(ctx, 'viewLayer', snapA, rootOpt());
    await expectCode(sn.view(ctx, 'viewLayer', snapA, rootOpt()), Code.ALREADY_EXISTS, 'second view');
    await expectCode(sn.prepare(ctx, snapA, '', rootOpt()), Code.ALREADY_EXISTS, 'prepare over a committed name');
  },

  async errorKinds(ctx, sn) {
    await sn.prepare(ctx, 'ek-a', '', rootOpt());
    await sn.commit(ctx, 'ek-c', 'ek-a', rootOpt());
    await sn.prepare(ctx, 'ek-a2', 'ek-c', rootOpt());
    await sn.view(ctx, 'ek-v', 'ek-c', rootOpt());
    await expectCode(sn.stat(ctx, 'ek-missing'), Code.NOT_FOUND, 'stat of a missing key');
    await expectCode(sn.usage(ctx, 'ek-missing'), Code.NOT_FOUND, 'usage of a missing key');
    await expectCode(sn.mounts(ctx, 'ek-missing'), Code.NOT_FOUND, 'mounts of a missing key');
    await expectCode(sn.prepare(ctx, 'ek-x', 'ek-missing', rootOpt()), Code.NOT_FOUND, 'prepare on a missing parent');
    await expectCode(sn.prepare(ctx, 'ek-y', 'ek-a2', rootOpt()), Code.INVALID_ARGUMENT, 'prepare on an active parent');
    await expectCode(sn.view(ctx, 'ek-z', 'ek-v', rootOpt()), Code.INVALID_ARGUMENT, 'view on a view');
    await expectCode(sn.mounts(ctx, 'ek-c'), Code.FAILED_PRECONDITION, 'mounts of a committed snapshot');
    await expectCode(sn.commit(ctx, 'ek-c2', 'ek-v', rootOpt()), Code.FAILED_PRECONDITION, 'commit of a view');
    await expectCode(sn.commit(ctx, 'ek-c2', 'ek-c', rootOpt()), Code.FAILED_PRECONDITION, 'commit of a committed snapshot');
    await expectCode(sn.commit(ctx, 'ek-c', 'ek-a2', rootOpt()), Code.ALREADY_EXISTS, 'commit onto an existing name');
    await expectCode(sn.commit(ctx, 'ek-c3', 'ek-missing', rootOpt()), Code.NOT_FOUND, 'commit of a missing key');
    await expectCode(sn.remove(ctx, 'ek-missing'), Code.NOT_FOUND, 'remove of a missing key');
    await expectCode(sn.remove(ctx, 'ek-c'), Code.FAILED_PRECONDITION, 'remove of a parent');
    await expectCode(sn.update(ctx, { name: 'ek-missing', labels: {} }), Code.NOT_FOUND, 'update of a missing key');
    // The failed attempts changed nothing.
    assert.deepEqual((await collect(ctx, sn)).map((i) => i.name).sort(), ['ek-a2', 'ek-c', 'ek-v']);
  },

  async update(ctx, sn) {
    const t1 = Date.now();
    await baseSnapshots(ctx, sn);
    const t2 = Date.now();
    const cases: [string, Kind, string][] = [
      ['c1', Kind.Committed, ''], ['c2', Kind.Committed, 'c1'], ['a1', Kind.Active, 'c2'],
      ['a2', Kind.Active, ''], ['v1', Kind.View, 'c2'], ['v2', Kind.View, ''],
    ];
    for (const [name, kind, parent] of cases) {
      let st = await sn.stat(ctx, name);
      assert.ok(st.createdAt.getTime() >= t1 && st.createdAt.getTime() <= t2, `${name}: created ${st.createdAt.toISOString()} outside the test`);
      assert.equal(st.updatedAt.getTime(), st.createdAt.getTime(), `${name}: updated differs from created`);
      assert.equal(st.kind, kind);
      assert.equal(st.parent, parent);
      assert.equal(st.name, name);
      const created = st.createdAt.getTime();
      const rootTime = new Date().toISOString();
      let expected: Record<string, string> = { l1: 'v1', l2: 'v2', l3: 'v3', 'containerd.io/gc.root': rootTime };
      const u1 = Date.now();
      st = await sn.update(ctx, { name, labels: expected });
      const u2 = Date.now();
      assert.equal(st.createdAt.getTime(), created, `${name}: created changed by update`);
      assert.ok(st.updatedAt.getTime() >= u1 && st.updatedAt.getTime() <= u2, `${name}: updated not refreshed`);
      assert.equal(st.kind, kind);
      assert.equal(st.parent, parent);
      assert.deepEqual(st.labels, expected);

      expected = { l1: 'updated', l3: 'v3', 'containerd.io/gc.root': rootTime };
      st = await sn.update(ctx, { name, labels: { l1: 'updated', l4: 'v4' } }, ['labels.l1', 'labels.l2']);
      assert.deepEqual(st.labels, expected);

      expected = { l4: 'v4', 'containerd.io/gc.root': rootTime };
      st = await sn.update(ctx, { name, labels: expected }, ['labels']);
      assert.deepEqual(st.labels, expected);
      assert.deepEqual((await sn.stat(ctx, name)).labels, expected);

      await expectCode(sn.update(ctx, { name, labels: expected }, ['parent']), Code.INVALID_ARGUMENT, 'update of an immutable field');
    }
  },

  async remove(ctx, sn) {
    await sn.prepare(ctx, 'committed-a', '', rootOpt());
    await sn.commit(ctx, 'committed-1', 'committed-a', rootOpt());
    await sn.prepare(ctx, 'reuse-1', 'committed-1', rootOpt());
    await sn.remove(ctx, 'reuse-1');
    await sn.view(ctx, 'reuse-1', 'committed-1', rootOpt());
    await sn.remove(ctx, 'reuse-1');
    await sn.prepare(ctx, 'reuse-1', '', rootOpt());
    await sn.remove(ctx, 'committed-1');
    await sn.commit(ctx, 'committed-1', 'reuse-1', rootOpt());
  },

  async walk(ctx, sn) {
    const opt = { labels: { 'containerd.io/gc.root': 'check-walk' } };
    const withL = (l: string) => ({ labels: { l, 'containerd.io/gc.root': 'check-walk' } });
    await sn.prepare(ctx, 'a-np', '', opt);
    await sn.prepare(ctx, 'p-tmp', '', opt);
    await sn.commit(ctx, 'p', 'p-tmp', opt);
    await sn.prepare(ctx, 'a', 'p', opt);
    await sn.view(ctx, 'v', 'p', opt);
    await sn.prepare(ctx, 'p-wl-tmp', '', opt);
    await sn.commit(ctx, 'p-wl', 'p-wl-tmp', withL('1'));
    await sn.prepare(ctx, 'a-wl', 'p-wl', withL('2'));
    await sn.view(ctx, 'v-wl', 'p-wl', withL('3'));
    await sn.prepare(ctx, 'a-np-wl', '', withL('2'));
    const cases: [string[], string[]][] = [
      [['a-np', 'p', 'a', 'v', 'p-wl', 'a-wl', 'v-wl', 'a-np-wl'], ['labels."containerd.io/gc.root"==check-walk']],
      [['a-np', 'a', 'a-wl', 'a-np-wl'], ['kind==active,labels."containerd.io/gc.root"==check-walk']],
      [['v', 'v-wl'], ['kind==view,labels."containerd.io/gc.root"==check-walk']],
      [['p', 'p-wl'], ['kind==committed,labels."containerd.io/gc.root"==check-walk']],
      [['p', 'a-np-wl'], ['name==p', 'name==a-np-wl']],
      [['a-wl'], ['name==a-wl,labels.l']],
      [['a', 'v'], ['parent==p']],
      [['a', 'v', 'a-wl', 'v-wl'], ['parent!="",labels."containerd.io/gc.root"==check-walk']],
      [['p-wl', 'a-wl', 'v-wl', 'a-np-wl'], ['labels.l']],
      [['a-wl', 'a-np-wl'], ['labels.l==2']],
    ];
    for (const [matches, filters] of cases) {
      const actual = (await collect(ctx, sn, filters)).map((i) => i.name).sort();
      assert.deepEqual(actual, [...matches].sort(), `filters ${JSON.stringify(filters)}`);
    }
  },

  async layerFileUpdate(ctx, sn, work) {
    const l1 = applyAll(createDir('etc', 0o700), createFile('etc/hosts', 'mydomain 10.0.0.1', 0o644), createFile('etc/profile', 'PATH=/usr/bin', 0o644));
    const l2 = applyAll(
      createFile('etc/hosts', 'mydomain 10.0.0.2', 0o644),
      createFile('etc/profile', 'PATH=/usr/bin', 0o666),
      createDir('root', 0o700),
      createFile('root/.bashrc', 'PATH=/usr/sbin:/usr/bin', 0o644),
    );
    await checkSnapshots(ctx, sn, work, l1, l2);
  },

  async removeDirectoryInLowerLayer(ctx, sn, work) {
    await checkSnapshots(ctx, sn, work,
      applyAll(createDir('lib', 0o700), createFile('lib/hidden', '', 0o644)),
      applyAll(removeAll('lib'), createDir('lib', 0o700), createFile('lib/not-hidden', '', 0o644)),
      applyAll(createFile('lib/newfile', '', 0o644)));
  },

  async chown(ctx, sn, work) {
    await checkSnapshots(ctx, sn, work,
      applyAll(createDir('opt', 0o700), createDir('opt/a', 0o700), createDir('opt/a/b', 0o700), createFile('opt/a/b/file.txt', 'hello', 0o644)),
      applyAll(chown('opt', 1, 1), chown('opt/a', 1, 1), chown('opt/a/b', 1, 1), chown('opt/a/b/file.txt', 1, 1)));
  },

  async directoryPermissionOnCommit(ctx, sn, work) {
    await checkSnapshots(ctx, sn, work,
      applyAll(
        createDir('dir1', 0o700), createDir('dir2', 0o700), createDir('dir3', 0o700), createDir('dir4', 0o700),
        createFile('dir4/f1', '...', 0o644), createDir('dir5', 0o700), createFile('dir5/f1', '...', 0o644),
        chown('dir1', 1, 1), chown('dir2', 1, 1), chown('dir3', 1, 1), chown('dir5', 1, 1), chown('dir5/f1', 1, 1),
      ),
      applyAll(chown('dir2', 0, 0), removeAll('dir3'), chown('dir4', 1, 1), chown('dir4/f1', 1, 1)),
      applyAll(createDir('dir3', 0o700), chown('dir3', 1, 1), removeAll('dir5'), createDir('dir5', 0o700), chown('dir5', 1, 1)));
  },

  async removeIntermediateSnapshot(ctx, sn, work) {
    const base = await prepareMount(ctx, sn, work, 'base', '');
    await unmountAll(base);
    const committedBase = join(work, 'committed-base');
    await sn.commit(ctx, committedBase, base, rootOpt());
    const intermediate = join(work, 'intermediate');
    await sn.prepare(ctx, intermediate, committedBase, rootOpt());
    const committedInter = join(work, 'committed-inter');
    await sn.commit(ctx, committedInter, intermediate, rootOpt());
    const top = join(work, 'toplayer');
    await sn.prepare(ctx, top, committedInter, rootOpt());
    await expectCode(sn.remove(ctx, committedInter), Code.FAILED_PRECONDITION, 'remove of the intermediate layer');
    await sn.remove(ctx, top);
    await sn.remove(ctx, committedInter);
    await sn.remove(ctx, committedBase);
  },

  async deletedFilesInChildSnapshot(ctx, sn, work) {
    await checkSnapshots(ctx, sn, work,
      applyAll(createFile('foo', 'foo\n', 0o777), createFile('foobar', 'foobar\n', 0o777)),
      applyAll(removeAll('foobar')),
      applyAll());
  },

  async moveFileFromLowerLayer(ctx, sn, work) {
    await checkSnapshots(ctx, sn, work,
      applyAll(createDir('dir1', 0o700), createFile('dir1/f1', 'Hello', 0o644), createDir('dir2', 0o700), createFile('dir2/f2', '...', 0o644)),
      applyAll(createDir('dir3', 0o700), createFile('dir3/f1', 'Hello', 0o644), removeAll('dir1'), hardlink('dir2/f2', 'dir3/f2'), removeAll('dir2/f2')));
  },

  async rename(ctx, sn, work) {
    await checkSnapshots(ctx, sn, work,
      applyAll(
        createDir('dir1', 0o700), createDir('somefiles', 0o700),
        createFile('somefiles/f1', 'was here first!', 0o644), createFile('somefiles/f2', 'nothing interesting', 0o644),
      ),
      applyAll(
        renamePath('dir1', 'dir2'),
        createFile('somefiles/f1-overwrite', 'new content 1', 0o644),
        renamePath('somefiles/f1-overwrite', 'somefiles/f1'),
        renamePath('somefiles/f2', 'somefiles/f3'),
      ));
  },

  async hardlinks(ctx, sn, work) {
    const [, top] = await checkSnapshots(ctx, sn, work,
      applyAll(createDir('d', 0o755), createFile('d/orig', 'shared data', 0o640), hardlink('d/orig', 'd/second'), hardlink('d/orig', 'third')),
      applyAll(createFile('unrelated', 'x', 0o600)));
    // Through a view of the child the three names are still one inode.
    const mounts = await sn.view(ctx, 'hl-view', top!, rootOpt());
    const target = join(work, 'hl-view');
    await withMounted(mounts, target, async () => {
      const inos = await Promise.all(['d/orig', 'd/second', 'third'].map(async (p) => (await lstat(join(target, p))).ino));
      assert.equal(new Set(inos).size, 1, 'hard links were split');
      assert.equal((await lstat(join(target, 'third'))).nlink, 3);
    });
  },

  async xattrs(ctx, sn, work) {
    await checkSnapshots(ctx, sn, work,
      applyAll(
        createDir('d', 0o755), setXattr('d', 'user.dir', 'on a directory'),
        createFile('d/f', 'content', 0o644), setXattr('d/f', 'user.one', '1'), setXattr('d/f', 'user.two', 'two'),
        setXattr('d/f', 'trusted.berth', 'trusted value'),
      ),
      applyAll(setXattr('d/f', 'user.one', 'changed'), createFile('g', 'g', 0o600), setXattr('g', 'user.g', 'x')));
  },

  async specialFiles(ctx, sn, work) {
    await checkSnapshots(ctx, sn, work,
      applyAll(
        createFile('target', 't', 0o644), symlinkTo('target', 'link'), symlinkTo('/absolute/dangling', 'dangling'),
        mkfifo('fifo', 0o640), mkchar('null', 0o666, 1, 3), createFile('suid', '#!/bin/sh\n', 0o4755),
        createDir('sticky', 0o1777),
      ),
      applyAll(removeAll('link'), symlinkTo('fifo', 'link'), chmodPath('target', 0o600)));
  },

  async timestamps(ctx, sn, work) {
    const parent = await createSnapshot(ctx, sn, '', work, applyAll(createDir('d', 0o755), createFile('d/f', 'data', 0o644)));
    const times = async (root: string) => {
      const f = await stat(join(root, 'd/f'), { bigint: true });
      const d = await stat(join(root, 'd'), { bigint: true });
      return { file: f.mtimeNs, dir: d.mtimeNs };
    };
    const pv = join(work, 'ts-parent');
    const before = await withMounted(await sn.view(ctx, 'ts-pv', parent, rootOpt()), pv, () => times(pv));
    const child = join(work, 'ts-child');
    const after = await withMounted(await sn.prepare(ctx, 'ts-child', parent, rootOpt()), child, () => times(child));
    assert.deepEqual(after, before, 'a child must see its parent files with their exact times');
  },

  async viewReadonly(ctx, sn, work) {
    await sn.prepare(ctx, join(work, 'preparing'), '', rootOpt());
    const committed = join(work, 'committed');
    await sn.commit(ctx, committed, join(work, 'preparing'), rootOpt());
    const view = join(work, 'view');
    const m = await sn.view(ctx, view, committed, rootOpt());
    const mp = join(work, 'view-mount');
    await withMounted(m, mp, async () => {
      await assert.rejects(writeFile(join(mp, 'testfile'), 'testcontent'), 'write into a view must fail');
    });
    // A view without a parent is read-only too.
    const empty = await sn.view(ctx, 'empty-view', '', rootOpt());
    const ep = join(work, 'empty-view');
    await withMounted(empty, ep, async () => {
      await assert.rejects(writeFile(join(ep, 'testfile'), 'x'), 'write into an empty view must fail');
    });
    await sn.remove(ctx, view);
    await sn.remove(ctx, committed);
  },

  async usage(ctx, sn, work) {
    const preparing = await prepareMount(ctx, sn, work, 'usage', '');
    await writeFile(join(preparing, 'data'), Buffer.alloc(1 << 20, 7));
    await mkdir(join(preparing, 'dir'));
    await writeFile(join(preparing, 'dir', 'small'), 'x');
    await unmountAll(preparing);
    const active = await sn.usage(ctx, preparing);
    assert.ok(active.size >= 1 << 20, `active usage ${active.size} below the data written`);
    assert.ok(active.inodes >= 4, `active inodes ${active.inodes}`);
    await sn.commit(ctx, 'usage-c', preparing, rootOpt());
    assert.deepEqual(await sn.usage(ctx, 'usage-c'), active, 'committed usage is the one measured at commit');
  },

  async statInWalk(ctx, sn) {
    const prefix = 'stats-in-walk-';
    await sn.prepare(ctx, `${prefix}c1-a`, '', rootOpt());
    await sn.commit(ctx, `${prefix}c1`, `${prefix}c1-a`, rootOpt());
    await sn.prepare(ctx, `${prefix}c2-a`, `${prefix}c1`, rootOpt());
    await sn.commit(ctx, `${prefix}c2`, `${prefix}c2-a`, rootOpt());
    await sn.prepare(ctx, `${prefix}a1`, `${prefix}c2`, rootOpt());
    await sn.view(ctx, `${prefix}v1`, `${prefix}c2`, rootOpt());
    let seen = 0;
    await sn.walk(ctx, async (si) => {
      if (!si.name.startsWith(prefix)) return;
      assert.deepEqual(await sn.stat(ctx, si.name), si);
      seen++;
    });
    assert.equal(seen, 4);
  },

  async closeTwice(ctx, sn) {
    const n = unique('closeTwice');
    await sn.prepare(ctx, `${n}-prepare`, '', rootOpt());
    await sn.commit(ctx, n, `${n}-prepare`, rootOpt());
    await sn.remove(ctx, n);
    await sn.close();
    await sn.close();
  },

  async rootPermission(ctx, sn, work) {
    const preparing = await prepareMount(ctx, sn, work, 'preparing', '');
    try {
      assert.equal((await stat(preparing)).mode & 0o777, 0o755);
    } finally {
      await unmountAll(preparing);
    }
  },

  async deepChain(ctx, sn, work) {
    // Ten committed layers, each adding a file and changing one shared file; then an active
    // snapshot on top sees every layer, and removal must go from the top down.
    const names: string[] = [];
    let parent = '';
    const flat = await mkdtemp(join(work, 'flat-'));
    for (let i = 0; i < 10; i++) {
      const a = applyAll(createFile(`layer-${i}`, `layer ${i}\n`, 0o644), createFile('shared', `written by ${i}\n`, 0o644));
      parent = await createSnapshot(ctx, sn, parent, work, a);
      await a(flat);
      names.push(parent);
    }
    const top = join(work, 'deep-top');
    await withMounted(await sn.prepare(ctx, 'deep-top', parent, rootOpt()), top, () => checkDirectoryEqual(flat, top));
    assert.equal((await sn.stat(ctx, 'deep-top')).parent, names[9]);
    await expectCode(sn.remove(ctx, names[9]!), Code.FAILED_PRECONDITION, 'remove under an active child');
    await sn.remove(ctx, 'deep-top');
    for (const n of [...names].reverse()) {
      if (n !== names[0]) await expectCode(sn.remove(ctx, names[0]!), Code.FAILED_PRECONDITION, 'remove of the base while it has children');
      await sn.remove(ctx, n);
    }
    assert.equal((await collect(ctx, sn)).length, 0);
  },
};

/** The long-chain check, parameterised by its length. */
function longChain(layers: number): Check {
  return async (ctx, sn, work) => {
    const flat = await mkdtemp(join(work, 'flat-'));
    const appliers: Applier[] = [applyAll(
      createFile('bottom', 'way at the bottom\n', 0o777),
      createFile('overwriteme', 'FIRST!\n', 0o777),
      createDir('ADDHERE', 0o755),
      createDir('ONLYME', 0o755),
      createFile('ONLYME/bottom', 'bye!\n', 0o777),
    )];
    for (let i = 1; i < layers; i++) {
      appliers.push(applyAll(
        createFile('overwriteme', `${i} WAS HERE!\n`, 0o777),
        createFile(`ADDHERE/file-${i}`, 'same\n', 0o755),
        removeAll('ONLYME'),
        createDir('ONLYME', 0o755),
        createFile(`ONLYME/file-${i}`, 'only me!\n', 0o777),
      ));
    }
    let parent = '';
    for (const [i, a] of appliers.entries()) {
      const preparing = join(work, `prepare-layer-${i}`);
      await mkdir(preparing);
      await withMounted(await sn.prepare(ctx, preparing, parent, rootOpt()), preparing, async () => {
        await checkDirectoryEqual(flat, preparing);
        await a(flat);
        await a(preparing);
        await checkDirectoryEqual(flat, preparing);
      });
      parent = join(work, `committed-${i}`);
      await sn.commit(ctx, parent, preparing, rootOpt());
    }
    const view = join(work, 'fullview');
    await withMounted(await sn.view(ctx, view, parent, rootOpt()), view, () => checkDirectoryEqual(flat, view));
  };
}

/**
 * Registers the whole suite for one snapshotter under `describe(name)`. `factory(root)`
 * must return a new snapshotter rooted at `root` (an empty directory).
 */
export function snapshotterSuite(name: string, factory: SnapshotterFactory, opts: SuiteOptions = {}): void {
  const run = (check: Check) => async () => {
    const base = opts.base?.() ?? tmpdir();
    // Paths end up in mount options, where a comma or space would split them.
    const dir = await mkdtemp(join(base, `snapshot-suite-${name.replace(/[^A-Za-z0-9._-]+/g, '_')}-`));
    const root = join(dir, 'root');
    const work = join(dir, 'work');
    await mkdir(root, { recursive: true });
    await mkdir(work, { recursive: true });
    const ctx: RequestContext = { namespace: 'testsuite' };
    let sn: Snapshotter | undefined;
    try {
      sn = await factory(root);
      await check(ctx, sn, work);
    } finally {
      await unmountAll(dir);
      await sn?.close().catch(() => undefined);
      if (existsSync(dir)) await (opts.removeTemp ?? ((d) => rm(d, { recursive: true, force: true })))(dir);
    }
  };
  describe(name, () => {
    for (const [checkName, check] of Object.entries(checks)) it(checkName, run(check));
    const layers = opts.chainLength ?? 128;
    it(`${layers} layers mount`, run(longChain(layers)));
  });
}
