/**
 * Snapshots through the real daemon: the real `ctr` 1.6 client drives a full snapshot cycle
 * on overlayfs and native (mounting what `ctr snapshots mounts` prints, as a user would),
 * `berth snapshots` prints what ctr prints, and the gRPC service behaves as containerd's
 * (events, List batches, Cleanup, unknown snapshotters, collection after removal).
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { codeOf, Code } from '../../core/errdefs/errdefs.js';
import { unmountAll } from '../../core/mount/index.js';
import { execa } from 'execa';
import { BERTH, collectGarbage, startDaemon, type TestDaemon } from '../helpers/daemon.js';

type Result = { code: number; stdout: string; stderr: string };
/** Runs a client with no stdin (nothing to write, so nothing to break on a quick exit). */
async function run(cmd: string, args: string[]): Promise<Result> {
  const r = await execa(cmd, args, { stdin: 'ignore', reject: false, stripFinalNewline: false });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}
const ctr = (address: string, args: string[], o: { namespace?: string } = {}) => run('ctr', ['-a', address, '-n', o.namespace ?? 'default', ...args]);
const berth = (address: string, args: string[], o: { namespace?: string } = {}) =>
  run(process.execPath, [BERTH, '-a', address, '-n', o.namespace ?? 'default', ...args]);
const runCommand = (cmd: string, args: string[]) => run(cmd, args);

let d: TestDaemon;
let mnt: string;

before(async () => {
  d = await startDaemon();
  mnt = join(d.dir, 'mnt');
  await mkdir(mnt);
});
after(async () => {
  await unmountAll(mnt);
  await d?.dispose();
});

async function ok(args: string[], ns = 'snaps'): Promise<string> {
  const r = await ctr(d.address, args, { namespace: ns });
  assert.equal(r.code, 0, `ctr ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/** Runs the mount command lines ctr printed. */
async function mountPrinted(lines: string): Promise<void> {
  const r = await runCommand('sh', ['-c', lines]);
  assert.equal(r.code, 0, `mount failed: ${r.stderr} (${lines})`);
}

describe('snapshots with the real ctr', () => {
  for (const snapshotter of ['overlayfs', 'native']) {
    it(`runs a prepare/commit/view cycle on ${snapshotter}`, async () => {
      const S = ['snapshots', '--snapshotter', snapshotter];
      await ok([...S, 'prepare', 'act']);
      await mountPrinted(await ok([...S, 'mounts', mnt, 'act']));
      await writeFile(join(mnt, 'f1'), 'layer1');
      await unmountAll(mnt);
      await ok([...S, 'commit', 'c1', 'act']);

      await ok([...S, 'prepare', 'act2', 'c1']);
      await mountPrinted(await ok([...S, 'mounts', mnt, 'act2']));
      try {
        assert.equal(await readFile(join(mnt, 'f1'), 'utf8'), 'layer1', 'the child sees its parent');
        await writeFile(join(mnt, 'f2'), 'two');
        await runCommand('rm', [join(mnt, 'f1')]);
      } finally {
        await unmountAll(mnt);
      }
      await ok([...S, 'commit', 'c2', 'act2']);

      await ok([...S, 'view', 'v', 'c2']);
      await mountPrinted(await ok([...S, 'mounts', mnt, 'v']));
      try {
        assert.ok(!existsSync(join(mnt, 'f1')), 'a deleted file is gone');
        assert.equal(await readFile(join(mnt, 'f2'), 'utf8'), 'two');
        await assert.rejects(writeFile(join(mnt, 'x'), 'x'), 'views are read-only');
      } finally {
        await unmountAll(mnt);
      }

      const ls = await ok([...S, 'ls']);
      assert.match(ls, /^KEY +PARENT +KIND +\n/);
      assert.match(ls, /\nv +c2 +View +\n/);
      assert.match(ls, /\nc2 +c1 +Committed +\n/);
      assert.match(await ok([...S, 'tree']), / c1\n {2}\\_ c2\n {4}\\_ v\n/);
      const info = JSON.parse(await ok([...S, 'info', 'c2']));
      assert.equal(info.Kind, 'Committed');
      assert.equal(info.Parent, 'c1');
      assert.ok(info.Labels['containerd.io/gc.root']);
      assert.match(await ok([...S, 'usage', 'c2']), /^KEY +SIZE +INODES +\nc2 +\d/);
      assert.match(await ok([...S, 'label', 'c2', 'k=v']), /k=v/);
      assert.equal(JSON.parse(await ok([...S, 'info', 'c2'])).Labels.k, 'v');

      const busy = await ctr(d.address, [...S, 'rm', 'c1'], { namespace: 'snaps' });
      assert.notEqual(busy.code, 0, 'a snapshot with children cannot be removed');
      assert.match(busy.stderr, /cannot remove snapshot with child/);
      await ok([...S, 'rm', 'v', 'c2', 'c1']);
      assert.equal(await ok([...S, 'ls']), 'KEY PARENT KIND \n');
    });
  }

  it('refuses duplicate keys and missing parents like containerd', async () => {
    await ok(['snapshots', 'prepare', 'dup']);
    const again = await ctr(d.address, ['snapshots', 'prepare', 'dup'], { namespace: 'snaps' });
    assert.equal(again.code, 1);
    assert.equal(again.stderr.trim(), 'ctr: snapshot "dup": already exists');
    const orphan = await ctr(d.address, ['snapshots', 'prepare', 'x', 'no-such-parent'], { namespace: 'snaps' });
    assert.equal(orphan.stderr.trim(), 'ctr: parent snapshot no-such-parent does not exist: not found');
    await ok(['snapshots', 'rm', 'dup']);
  });

  it('prints with berth exactly what ctr prints', async () => {
    const ns = 'same-output';
    await ok(['snapshots', 'prepare', 'base-a'], ns);
    await ok(['snapshots', 'commit', 'base', 'base-a'], ns);
    await ok(['snapshots', 'prepare', 'top', 'base'], ns);
    // ctr's views carry no gc.root label and may be collected at any time: make a rooted one.
    const { SnapshotsDefinition } = await import('../../api/gen/services/snapshots/v1/snapshots.js');
    await d.connect(ns).service(SnapshotsDefinition).view({ snapshotter: 'overlayfs', key: 'look', parent: 'base', labels: { 'containerd.io/gc.root': 'x' } });
    await ok(['snapshots', '--snapshotter', 'native', 'prepare', 'n'], ns);
    const cases = [
      ['snapshots', 'ls'], ['snapshots', 'tree'], ['snapshots', 'info', 'base'], ['snapshots', 'info', 'top'],
      ['snapshots', 'usage'], ['snapshots', 'usage', '-b', 'top'], ['snapshots', 'mounts', '/mnt/x', 'top'],
      ['snapshots', 'mounts', '/mnt/y', 'look'], ['snapshots', '--snapshotter', 'native', 'ls'],
      ['snapshots', '--snapshotter', 'native', 'mounts', '/t', 'n'], ['snapshots', 'label', 'top'],
    ];
    for (const args of cases) {
      const want = await ctr(d.address, args, { namespace: ns });
      const got = await berth(d.address, args, { namespace: ns });
      assert.equal(want.code, 0, want.stderr);
      assert.equal(got.stdout, want.stdout, `berth ${args.join(' ')}: ${got.stderr}`);
    }
    // prepare --mounts prints Go's JSON of the mounts; -t prints the mount command.
    const viaBerth = await berth(d.address, ['snapshots', 'prepare', '--mounts', '-t', '/target', 'p2', 'base'], { namespace: ns });
    const viaCtr = await ctr(d.address, ['snapshots', 'prepare', '--mounts', '-t', '/target', 'p3', 'base'], { namespace: ns });
    assert.equal(viaBerth.code, 0, viaBerth.stderr);
    assert.equal(viaBerth.stdout.replace(/\/\d+\/(fs|work)/g, '/N/$1'), viaCtr.stdout.replace(/\/\d+\/(fs|work)/g, '/N/$1'));
    // Errors read the same (ctr: … vs berth: …).
    const e1 = await ctr(d.address, ['snapshots', 'rm', 'base'], { namespace: ns });
    const e2 = await berth(d.address, ['snapshots', 'rm', 'base'], { namespace: ns });
    assert.equal(e2.code, 1);
    assert.equal(e2.stderr.replace(/^berth: /, ''), e1.stderr.replace(/^ctr: /, ''));
    const labelled = await berth(d.address, ['snapshots', 'label', 'top', 'a=1', 'b=2'], { namespace: ns });
    assert.match(labelled.stdout, /^a=1,b=2,containerd.io\/gc.root=/);
  });
});

describe('snapshots diff', () => {
  /** The entries of the gzip tar a client wrote to stdout (type, mode, name), as `tar -tv` lists them. */
  async function listing(tool: 'ctr' | 'berth', args: string[]): Promise<string> {
    const cmd = tool === 'ctr' ? ['ctr', '-a', d.address, '-n', 'diffs'] : [process.execPath, BERTH, '-a', d.address, '-n', 'diffs'];
    const r = await execa(cmd[0]!, [...cmd.slice(1), 'snapshots', 'diff', ...args], { stdin: 'ignore', reject: false, encoding: 'buffer' });
    assert.equal(r.exitCode, 0, `${tool} snapshots diff ${args.join(' ')}: ${Buffer.from(r.stderr).toString()}`);
    const t = await execa('tar', ['-tvzf', '-'], { input: Buffer.from(r.stdout) });
    return t.stdout.split('\n').map((l) => { const f = l.split(/\s+/); return `${f[0]} ${f[5]}`; }).join('\n');
  }

  it('writes the layer ctr writes: one snapshot against its parent, A to B, and with --keep', async () => {
    await ok(['snapshots', 'prepare', 'base'], 'diffs');
    await mountPrinted(await ok(['snapshots', 'mounts', mnt, 'base'], 'diffs'));
    await writeFile(join(mnt, 'a.txt'), 'hello');
    await mkdir(join(mnt, 'd'));
    await unmountAll(mnt);
    await ok(['snapshots', 'commit', 'base-c', 'base'], 'diffs');
    await ok(['snapshots', 'prepare', 'top', 'base-c'], 'diffs');
    await mountPrinted(await ok(['snapshots', 'mounts', mnt, 'top'], 'diffs'));
    await writeFile(join(mnt, 'd', 'b.txt'), 'world');
    await rm(join(mnt, 'a.txt'));
    await unmountAll(mnt);

    const expected: Record<string, string> = {
      top: '---------- .wh.a.txt\ndrwxr-xr-x d/\n-rw-r--r-- d/b.txt',
      'base-c': '-rw-r--r-- a.txt\ndrwxr-xr-x d/',
      'top base-c': '-rw-r--r-- a.txt\ndrwxr-xr-x d/\n---------- d/.wh.b.txt',
    };
    for (const [args, entries] of Object.entries(expected)) {
      assert.equal(await listing('ctr', args.split(' ')), entries, `ctr snapshots diff ${args}`);
      assert.equal(await listing('berth', args.split(' ')), entries, `berth snapshots diff ${args}`);
    }
    // The temporary views are gone; without --keep the diff blob goes with the lease.
    assert.equal(await ok(['snapshots', 'ls'], 'diffs'), 'KEY    PARENT KIND      \nbase-c        Committed \ntop    base-c Active    \n');
    await collectGarbage(d.connect('diffs'));
    assert.equal(await ok(['content', 'ls', '-q'], 'diffs'), '');
    const kept = await berth(d.address, ['snapshots', 'diff', '--keep', '--label', 'team=a', 'top'], { namespace: 'diffs' });
    assert.equal(kept.code, 0, kept.stderr);
    await collectGarbage(d.connect('diffs'));
    assert.match(await ok(['content', 'ls'], 'diffs'), /containerd\.io\/gc\.root=.*team=a|team=a.*containerd\.io\/gc\.root=/);

    const missing = await berth(d.address, ['snapshots', 'diff', 'nope'], { namespace: 'diffs' });
    assert.deepEqual([missing.code, missing.stderr], [1, 'berth: snapshot nope does not exist: not found\n']);
    assert.equal((await berth(d.address, ['snapshots', 'diff'], { namespace: 'diffs' })).stderr, 'berth: snapshot id must be provided\n');
  });
});

describe('snapshots gRPC service', () => {
  it('publishes prepare/commit/remove events (none for view)', async () => {
    const { EventsDefinition } = await import('../../api/gen/services/events/v1/events.js');
    const ac = new AbortController();
    const topics: string[] = [];
    const stream = d.connect('ev').service(EventsDefinition).subscribe({ filters: ['namespace==ev'] }, { signal: ac.signal });
    const reading = (async () => {
      try {
        for await (const e of stream) {
          topics.push(e.topic);
          if (e.topic === '/snapshot/remove') break;
        }
      } catch { /* cancelled */ }
    })();
    await sleep(100);
    await ok(['snapshots', 'prepare', 'e1'], 'ev');
    await ok(['snapshots', 'commit', 'e2', 'e1'], 'ev');
    await ok(['snapshots', 'view', 'e3', 'e2'], 'ev');
    await ok(['snapshots', 'rm', 'e3'], 'ev');
    await Promise.race([reading, sleep(5000)]);
    ac.abort();
    assert.deepEqual(topics, ['/snapshot/prepare', '/snapshot/commit', '/snapshot/remove']);
  });

  it('streams List in batches of at most 100, refuses Cleanup and unknown snapshotters', async () => {
    const { SnapshotsDefinition } = await import('../../api/gen/services/snapshots/v1/snapshots.js');
    const svc = d.connect('many').service(SnapshotsDefinition);
    for (let i = 0; i < 130; i++) await svc.prepare({ snapshotter: 'overlayfs', key: `k${String(i).padStart(3, '0')}`, labels: { 'containerd.io/gc.root': 'x' } });
    const sizes: number[] = [];
    for await (const r of svc.list({ snapshotter: 'overlayfs' })) sizes.push(r.info.length);
    assert.deepEqual(sizes, [100, 30]);
    const filtered: string[] = [];
    for await (const r of svc.list({ snapshotter: 'overlayfs', filters: ['name~=k12'] })) filtered.push(...r.info.map((i) => i.name));
    assert.deepEqual(filtered.sort(), ['k120', 'k121', 'k122', 'k123', 'k124', 'k125', 'k126', 'k127', 'k128', 'k129']);

    await assert.rejects(svc.cleanup({ snapshotter: 'overlayfs' }), (e) => {
      assert.equal(codeOf(e), Code.UNIMPLEMENTED);
      assert.match((e as Error).message, /snapshotter does not implement Cleanup method/);
      return true;
    });
    await assert.rejects(svc.stat({ snapshotter: 'nope', key: 'k000' }), (e) => {
      assert.equal(codeOf(e), Code.INVALID_ARGUMENT);
      assert.match((e as Error).message, /snapshotter not loaded: nope/);
      return true;
    });
    await assert.rejects(svc.stat({ snapshotter: '', key: 'k000' }), (e) => codeOf(e) === Code.INVALID_ARGUMENT);
    await assert.rejects(svc.update({ snapshotter: 'overlayfs', info: { name: 'k000', labels: {} }, updateMask: ['kind'] }), (e) => codeOf(e) === Code.INVALID_ARGUMENT);
  });

  it('removes the backend snapshot after Remove (garbage collection), not at once', async () => {
    const root = join(d.root, 'io.containerd.snapshotter.v1.native', 'snapshots');
    const before = new Set(readdirSync(root));
    await ok(['snapshots', '--snapshotter', 'native', 'prepare', 'doomed'], 'gc');
    const made = readdirSync(root).filter((n) => !before.has(n));
    assert.equal(made.length, 1);
    await ok(['snapshots', '--snapshotter', 'native', 'rm', 'doomed'], 'gc');
    // The tests' schedule runs no collection by itself.
    await collectGarbage(d.connect('gc'));
    // The snapshotter's own cleanup finishes in the background after the collection.
    const deadline = Date.now() + 10_000;
    while (existsSync(join(root, made[0]!)) && Date.now() < deadline) await sleep(50);
    assert.equal(existsSync(join(root, made[0]!)), false, 'the collector removed the backend snapshot');
  });

  it('keeps snapshots across a restart and removes orphaned directories at boot', async () => {
    await ok(['snapshots', 'prepare', 'survivor'], 'restart');
    const overlay = join(d.root, 'io.containerd.snapshotter.v1.overlayfs', 'snapshots');
    const native = join(d.root, 'io.containerd.snapshotter.v1.native', 'snapshots');
    for (const dir of [join(overlay, '99999'), join(overlay, 'new-crash'), join(native, '99999'), join(native, 'rm-5')]) await mkdir(dir);
    await d.kill9();
    await d.restart();
    // Wait until the new process answers (its socket replaces the stale one).
    for (let i = 0; i < 200 && (await ctr(d.address, ['version'])).code !== 0; i++) await sleep(25);
    assert.match(await ok(['snapshots', 'ls'], 'restart'), /\nsurvivor +Active +\n/);
    const deadline = Date.now() + 5000;
    const leftovers = () => [...readdirSync(overlay), ...readdirSync(native)].filter((n) => n === '99999' || n.startsWith('new-') || n.startsWith('rm-'));
    while (leftovers().length && Date.now() < deadline) await sleep(20);
    assert.deepEqual(leftovers(), []);
  });

  it('refuses an empty key as containerd does (unknown error)', async () => {
    const { SnapshotsDefinition } = await import('../../api/gen/services/snapshots/v1/snapshots.js');
    const svc = d.connect('empty').service(SnapshotsDefinition);
    await assert.rejects(svc.prepare({ snapshotter: 'overlayfs', key: '' }), (e) => codeOf(e) === Code.UNKNOWN && /bucket name required/.test((e as Error).message));
  });
});
