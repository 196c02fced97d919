/**
 * The btrfs snapshotter in the daemon: loaded (ok) when root_path is on a btrfs filesystem —
 * here a loop-mounted image — and used end to end with the real ctr; skipped, with
 * containerd's reason, on the default root (not btrfs).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fsTypeOf, unmountAll } from '../../core/mount/index.js';
import { execa } from 'execa';
import { BERTH, startDaemon, type TestDaemon } from '../helpers/daemon.js';

type Result = { code: number; stdout: string; stderr: string };
async function run(cmd: string, args: string[]): Promise<Result> {
  const r = await execa(cmd, args, { stdin: 'ignore', reject: false, stripFinalNewline: false });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}
const ctr = (address: string, args: string[], o: { namespace?: string } = {}) => run('ctr', ['-a', address, '-n', o.namespace ?? 'default', ...args]);
const berth = (address: string, args: string[]) => run(process.execPath, [BERTH, '-a', address, '-n', 'default', ...args]);
const runCommand = (cmd: string, args: string[]) => run(cmd, args);
import { btrfsFixture, type BtrfsFixture } from './plugins/snapshotter/btrfs-fixture.js';

describe('btrfs snapshotter in berthd', () => {
  let fs: BtrfsFixture;
  let d: TestDaemon;
  let plain: TestDaemon;
  let mnt: string;

  before(async () => {
    fs = await btrfsFixture('512M');
    d = await startDaemon({ extraConfig: `[plugins."io.containerd.snapshotter.v1.btrfs"]\n  root_path = "${join(fs.mountpoint, 'btrfs')}"` });
    plain = await startDaemon();
    mnt = join(d.dir, 'mnt');
    await mkdir(mnt);
  });
  after(async () => {
    await unmountAll(mnt);
    await d?.dispose();
    await plain?.dispose();
    await fs?.dispose();
  });

  it('is ok on a btrfs root_path and exports it', async () => {
    const ls = await berth(d.address, ['plugins', 'ls']);
    assert.match(ls.stdout, /\nio\.containerd\.snapshotter\.v1 +btrfs +linux\/\w+ +ok/);
    const detail = await berth(d.address, ['plugins', 'ls', '-d', 'id==btrfs']);
    assert.match(detail.stdout, new RegExp(`root +${join(fs.mountpoint, 'btrfs')}`));
  });

  it('is skipped with the reason elsewhere', async () => {
    const ls = await berth(plain.address, ['plugins', 'ls']);
    assert.match(ls.stdout, /\nio\.containerd\.snapshotter\.v1 +btrfs +linux\/\w+ +skip/);
    const root = join(plain.root, 'io.containerd.snapshotter.v1.btrfs');
    const detail = await berth(plain.address, ['plugins', 'ls', '-d', 'id==btrfs']);
    assert.ok(
      detail.stdout.includes(`path ${root} (${await fsTypeOf(root)}) must be a btrfs filesystem to be used with the btrfs snapshotter: skip plugin`),
      detail.stdout,
    );
    // ctr agrees.
    const viaCtr = await ctr(plain.address, ['plugins', 'ls']);
    assert.match(viaCtr.stdout, /btrfs +linux\/\w+ +skip/);
  });

  it('runs a snapshot cycle through ctr with subvolume mounts', async () => {
    const run = async (args: string[]) => {
      const r = await ctr(d.address, ['snapshots', '--snapshotter', 'btrfs', ...args], { namespace: 'b' });
      assert.equal(r.code, 0, `ctr ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    const mount = async (key: string) => {
      const line = await run(['mounts', mnt, key]);
      assert.match(line, /^mount -t btrfs \/dev\/loop\d+ \S+ -o subvolid=\d+(,ro)?\n$/);
      const r = await runCommand('sh', ['-c', line]);
      assert.equal(r.code, 0, r.stderr);
    };
    await run(['prepare', 'a']);
    await mount('a');
    await writeFile(join(mnt, 'f'), 'base');
    await unmountAll(mnt);
    await run(['commit', 'c', 'a']);
    await run(['prepare', 'a2', 'c']);
    await mount('a2');
    try {
      assert.equal(await readFile(join(mnt, 'f'), 'utf8'), 'base');
      await writeFile(join(mnt, 'g'), 'child');
    } finally {
      await unmountAll(mnt);
    }
    await run(['commit', 'c2', 'a2']);
    await run(['view', 'v', 'c2']);
    await mount('v');
    try {
      assert.equal(await readFile(join(mnt, 'g'), 'utf8'), 'child');
      await assert.rejects(writeFile(join(mnt, 'x'), 'x'), 'views are read-only');
    } finally {
      await unmountAll(mnt);
    }
    assert.match(await run(['ls']), /\nc2 +c +Committed +\n/);
    const root = join(fs.mountpoint, 'btrfs');
    assert.ok(existsSync(join(root, 'snapshots')) && existsSync(join(root, 'active')) && existsSync(join(root, 'view')));
    await run(['rm', 'v', 'c2', 'c']);
    assert.equal(await run(['ls']), 'KEY PARENT KIND \n');
  });
});
