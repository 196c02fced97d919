import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { berth, BERTHD, ctr, runCommand, startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { NamespacesDefinition } from '../../../api/gen/services/namespaces/v1/namespace.js';
import { VersionDefinition } from '../../../api/gen/services/version/v1/version.js';
import { HealthDefinition } from '../../../api/gen/grpc/health/v1/health.js';
import { isFailedPrecondition, isAlreadyExists, isInvalidArgument } from '../../../core/errdefs/errdefs.js';
import { tempDir } from '../../helpers/tmp.js';
import { busyboxRootfs } from '../../helpers/fixtures.js';

let d: TestDaemon;
before(async () => { d = await startDaemon(); });
after(async () => { await d?.dispose(); });

test('socket is 0660 and serves version and health', async () => {
  assert.equal(statSync(d.address).mode & 0o777, 0o660);
  const c = d.connect();
  const v = await c.service(VersionDefinition).version({});
  assert.match(v.version, /^1\.6\.20\+berth/);
  assert.equal((await c.service(HealthDefinition).check({})).status, 1);
});

test('namespaces over the real socket: create, get, list with filter, update mask, delete', async () => {
  const ns = d.connect().service(NamespacesDefinition);
  await ns.create({ namespace: { name: 'team-a', labels: { owner: 'x' } } });
  await assert.rejects(ns.create({ namespace: { name: 'team-a' } }), isAlreadyExists);
  await assert.rejects(ns.create({ namespace: { name: 'bad/name' } }), isInvalidArgument);
  // containerd's wording for a bad name on Create: the identifier message alone.
  await assert.rejects(ns.create({ namespace: { name: 'bad name' } }), (e: Error) =>
    e.message.endsWith('identifier "bad name" must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$: invalid argument') && !e.message.includes('namespace validation'));
  assert.deepEqual((await ns.get({ name: 'team-a' })).namespace?.labels, { owner: 'x' });
  assert.deepEqual((await ns.get({ name: 'never-made' })).namespace?.labels, {});
  await ns.update({ namespace: { name: 'team-a', labels: { tier: 'gold' } }, updateMask: ['labels.tier'] });
  assert.deepEqual((await ns.get({ name: 'team-a' })).namespace?.labels, { owner: 'x', tier: 'gold' });
  const listed = await ns.list({ filter: 'labels.tier==gold' });
  assert.deepEqual(listed.namespaces.map((n) => n.name), ['team-a']);
  await ns.delete({ name: 'team-a' });
  assert.equal((await ns.list({})).namespaces.some((n) => n.name === 'team-a'), false);
  await assert.rejects(ns.update({ namespace: { name: 'x' }, updateMask: ['name'] }), isInvalidArgument);
});

test('the real ctr client talks to berthd', async () => {
  const v = await ctr(d.address, ['version']);
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout, /Server:\s+Version:\s+1\.6\.20\+berth/);
  assert.match(v.stdout, /UUID: [0-9a-f-]{36}/);
  assert.equal((await ctr(d.address, ['namespaces', 'create', 'ctr-ns', 'team=a'])).code, 0);
  const again = await ctr(d.address, ['namespaces', 'create', 'ctr-ns']);
  assert.equal(again.stderr.trim(), 'ctr: namespace "ctr-ns": already exists');
  const ls = await ctr(d.address, ['namespaces', 'ls']);
  assert.match(ls.stdout, /^ctr-ns\s+team=a\s*$/m);
  assert.equal((await ctr(d.address, ['namespaces', 'label', 'ctr-ns', 'team=b'])).code, 0);
  assert.match((await ctr(d.address, ['namespaces', 'ls'])).stdout, /^ctr-ns\s+team=b\s*$/m);
  assert.equal((await ctr(d.address, ['namespaces', 'rm', 'ctr-ns'])).code, 0);
  const plugins = await ctr(d.address, ['plugins', 'ls']);
  assert.match(plugins.stdout, /io\.containerd\.grpc\.v1\s+version\s+-\s+ok/);
});

test('berth CLI: version, plugins ls -d filter, graph, namespaces', async () => {
  const v = await berth(d.address, ['version']);
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout, /Server:\n\s+Version:\s+1\.6\.20/);
  const p = await berth(d.address, ['plugins', 'ls', '-d', 'id==introspection']);
  assert.match(p.stdout, /Type:\s+io\.containerd\.grpc\.v1/);
  assert.doesNotMatch(p.stdout, /ID:\s+version/);
  const dot = await berth(d.address, ['plugins', 'graph', '--dot']);
  assert.match(dot.stdout, /^digraph plugins/);
  assert.match(dot.stdout, /"io\.containerd\.grpc\.v1\.namespaces" -> "io\.containerd\.service\.v1\.namespaces-service"/);
  assert.equal((await berth(d.address, ['namespaces', 'create', 'cli-ns', 'k=v'])).code, 0);
  // Byte for byte what ctr prints (its tabwriter pads the last cell too).
  const listed = (await berth(d.address, ['ns', 'ls'])).stdout;
  assert.match(listed, /^cli-ns\s+k=v\s*$/m);
  assert.equal(listed, (await ctr(d.address, ['namespaces', 'ls'])).stdout);
  const plugins = await berth(d.address, ['plugins', 'ls']);
  assert.equal(plugins.stdout, (await ctr(d.address, ['plugins', 'ls'])).stdout);
  assert.equal((await berth(d.address, ['ns', 'rm', 'cli-ns'])).code, 0);
});

test('berth and ctr report the same errors for missing or malformed targets', async () => {
  const norm = (r: { code: number; stdout: string; stderr: string }) => ({
    code: r.code,
    stdout: r.stdout,
    stderr: r.stderr.replace(/^(ctr|berth): /gm, '').replace(/time="[^"]*"/g, 'T'),
  });
  for (const args of [
    ['content', 'rm', 'nope'],
    ['namespaces', 'rm', 'never-created'],
    ['tasks', 'rm', 'nope'],
    ['images', 'import', '/nonexistent.tar'],
    ['images', 'import', '/tmp'],
    ['containers', 'create'],
    ['images', 'export', '/nonexistent/dir/out.tar', 'some/image:tag'],
    ['images', 'export', '/tmp', 'some/image:tag'],
    ['containers', 'create', '--rootfs', '--device', '/nonexistent', '/tmp', 'dev1', '/bin/true'],
    ['containers', 'create', '--rootfs', '--device', '/etc/hostname', '/tmp', 'dev2', '/bin/true'],
  ]) {
    assert.deepEqual(norm(await berth(d.address, args)), norm(await ctr(d.address, args)), args.join(' '));
  }
  // A malformed number is refused before anything is created (ctr adds its usage text).
  for (const flag of ['--memory-limit', '--cpus', '--cpu-quota']) {
    const r = await berth(d.address, ['run', '--rm', flag, 'abc', 'some/image:tag', 'c1', 'true']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`invalid value "abc" for flag -${flag.slice(2)}: parse error`));
    assert.match((await ctr(d.address, ['run', '--rm', flag, 'abc', 'some/image:tag', 'c1', 'true'])).stderr, /parse error/);
  }
});

test('an unreachable daemon gets one clear line', async () => {
  const r = await berth('/tmp/berth-no-such.sock', ['version']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim(), 'berth: cannot connect to /tmp/berth-no-such.sock: no such socket (is the daemon running?)');
});

test('a live socket is refused, a stale one is replaced, SIGTERM removes the socket', async () => {
  const dir = tempDir('berth-sock-');
  const live = join(dir, 'live.sock');
  const server = createServer().listen(live);
  await new Promise((r) => server.once('listening', r));
  const r = await runCommand(process.execPath, [BERTHD, '--root', join(dir, 'r'), '--state', join(dir, 's'), '--address', live]);
  server.close();
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /another daemon is already serving on this socket/);

  // A socket file nobody answers on (left by a crashed daemon) is replaced.
  const stale = join(dir, 'stale.sock');
  execFileSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', stale]);
  assert.ok(existsSync(stale));
  const child = spawn(process.execPath, [BERTHD, '--root', join(dir, 'r2'), '--state', join(dir, 's2'), '--address', stale], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (b) => (log += b));
  for (let i = 0; i < 200 && !/successfully booted/.test(log); i++) await new Promise((res) => setTimeout(res, 25));
  assert.match(log, /successfully booted/);
  assert.equal((await ctr(stale, ['version'])).code, 0);
  const exited = new Promise((res) => child.once('exit', res));
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
  assert.equal(existsSync(stale), false, 'socket removed on SIGTERM');
  assert.match(log, /berthd stopped/);
});

test('SIGTERM while the daemon boots, or the moment its socket appears, is a clean stop once the boot is done', async () => {
  const dir = tempDir('berth-early-stop-');
  for (const when of ['booting', 'socket'] as const) {
    const sock = join(dir, `${when}.sock`);
    const child = spawn(process.execPath, [BERTHD, '--root', join(dir, `${when}-r`), '--state', join(dir, `${when}-s`), '--address', sock], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr.on('data', (b) => (log += b));
    const exited = new Promise((res) => child.once('exit', (code, signal) => res(signal ?? code)));
    // 'booting': as soon as the first plugin loads (the handler is in place by then).
    for (let i = 0; i < 2000 && !(when === 'booting' ? /loading plugin/.test(log) : existsSync(sock)); i++) await new Promise((res) => setTimeout(res, 2));
    child.kill('SIGTERM');
    assert.equal(await exited, 0, `${when}: ${log}`);
    assert.match(log, /successfully booted[\s\S]*received SIGTERM, shutting down[\s\S]*berthd stopped/, when);
    assert.equal(existsSync(sock), false, `${when}: socket removed`);
  }
});

test('a second daemon on a live root or state is refused before any plugin runs, and the first is untouched', async () => {
  // The first daemon's Prepare leaves overlayfs's spare directories behind it: debris to a
  // second daemon's boot-time cleanup, had it got that far.
  const ns = ['-n', 'lockcheck'];
  assert.equal((await ctr(d.address, [...ns, 'snapshots', 'prepare', 'held'])).code, 0);
  const snapshots = join(d.root, 'io.containerd.snapshotter.v1.overlayfs', 'snapshots');
  const before = readdirSync(snapshots);
  const dir = tempDir('berth-lock-');
  const r = await runCommand(process.execPath, [BERTHD, '--root', d.root, '--state', join(dir, 's'), '--address', join(dir, 'other.sock'), '--log-level', 'debug']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`root ${d.root} is in use by another berthd \\(pid \\d+\\): ${join(d.root, 'berthd.lock')} is locked`));
  assert.doesNotMatch(r.stderr, /loading plugin/);
  // (The first daemon may still be refilling its spares: nothing may be gone, more may be there.)
  assert.deepEqual(before.filter((name) => !existsSync(join(snapshots, name))), []);
  assert.equal((await ctr(d.address, [...ns, 'snapshots', 'rm', 'held'])).code, 0);

  // Another root on the same state directory (the first daemon's task bundles).
  const r3 = await runCommand(process.execPath, [BERTHD, '--root', join(dir, 'r'), '--state', d.state, '--address', join(dir, 'other.sock'), '--log-level', 'debug']);
  assert.equal(r3.code, 1);
  assert.match(r3.stderr, new RegExp(`state ${d.state} is in use by another berthd \\(pid \\d+\\)`));
  assert.doesNotMatch(r3.stderr, /loading plugin/);

  // The same socket with another root: refused before any plugin runs as well.
  const r2 = await runCommand(process.execPath, [BERTHD, '--root', join(dir, 'r'), '--state', join(dir, 's'), '--address', d.address, '--log-level', 'debug']);
  assert.equal(r2.code, 1);
  assert.match(r2.stderr, /another daemon is already serving on this socket/);
  assert.doesNotMatch(r2.stderr, /loading plugin/);
  assert.equal((await ctr(d.address, ['version'])).code, 0);
});

test('relative root, state and socket mean the directories where berthd started; a container runs', async () => {
  // The shim works in its bundle directory: relative paths handed to it used to point nowhere.
  const dir = tempDir('berth-rel-');
  const child = spawn(process.execPath, [BERTHD, '--root', 'r', '--state', 's', '--address', 'b.sock'], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (b) => (log += b));
  try {
    for (let i = 0; i < 200 && !/successfully booted/.test(log); i++) await new Promise((res) => setTimeout(res, 25));
    assert.match(log, new RegExp(`successfully booted.*address=${join(dir, 'b.sock')}`));
    assert.ok(existsSync(join(dir, 'r', 'berthd.lock')) && existsSync(join(dir, 's', 'berthd.lock')));
    const r = await ctr(join(dir, 'b.sock'), ['run', '--rm', '--rootfs', busyboxRootfs(), 'rel1', '/bin/echo', 'relative'], { namespace: 'rel' });
    assert.equal(r.stderr, '');
    assert.equal(r.stdout.trim(), 'relative');
  } finally {
    const exited = new Promise((res) => child.once('exit', res));
    child.kill('SIGTERM');
    await exited;
  }
});

test('a root, state or socket that cannot be made is named with the reason', async () => {
  const dir = tempDir('berth-dirs-');
  const file = join(dir, 'file');
  writeFileSync(file, '');
  const run = (root: string, state: string, address = join(dir, 's.sock')) =>
    runCommand(process.execPath, [BERTHD, '--root', root, '--state', state, '--address', address]);
  const refused = async (r: Promise<{ code: number; stderr: string }>, message: string) => {
    const { code, stderr } = await r;
    assert.equal(code, 1);
    assert.equal(stderr.trim(), `berthd: ${message}: invalid argument`);
  };
  await refused(run(file, join(dir, 's')), `root ${file}: ${file} is not a directory`);
  await refused(run(join(dir, 'r'), join(file, 'a', 'b')), `state ${join(file, 'a', 'b')}: ${file} is not a directory`);
  await refused(run(join(dir, 'r'), join(dir, 's'), join(file, 'x.sock')), `socket ${join(file, 'x.sock')}: ${file} is not a directory`);
  await refused(run(join(dir, 'r'), join(dir, 's'), dir), `socket ${dir} is a directory`);
  // Below a read-only mount, some levels down (a recursive mkdir would say ENOENT).
  const ro = join(dir, 'ro');
  mkdirSync(ro);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', ro]);
  try {
    await refused(run(join(ro, 'a', 'b'), join(dir, 's')), `root ${join(ro, 'a', 'b')}: cannot create ${join(ro, 'a')}: read-only file system`);
  } finally {
    execFileSync('umount', [ro]);
  }
});

test('bad config exits non-zero with file and position', async () => {
  const dir = tempDir('berth-cfg-');
  const cfg = join(dir, 'c.toml');
  writeFileSync(cfg, 'version = 2\n[grpc]\n  uid = "root"\n');
  const r = await runCommand(process.execPath, [BERTHD, '--config', cfg]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /c\.toml: grpc\.uid: expected an integer, got string "root"/);
  writeFileSync(cfg, 'version = 2\nroot = \n');
  const r2 = await runCommand(process.execPath, [BERTHD, '--config', cfg]);
  assert.equal(r2.code, 1);
  assert.match(r2.stderr, /c\.toml:2:\d+: invalid TOML/);
  const r3 = await runCommand(process.execPath, [BERTHD, '--config', join(dir, 'missing.toml')]);
  assert.equal(r3.code, 1);
  assert.match(r3.stderr, /missing\.toml: cannot read config file/);
});

test('config default is complete TOML that loads back; config dump shows the merged result', async () => {
  const def = await runCommand(process.execPath, [BERTHD, 'config', 'default']);
  assert.equal(def.code, 0, def.stderr);
  assert.match(def.stdout, /root = "\/var\/lib\/berth"/);
  assert.match(def.stdout, /\[plugins\."io\.containerd\.metadata\.v1\.sqlite"\]/);
  const dir = tempDir('berth-cfg-');
  writeFileSync(join(dir, 'd.toml'), def.stdout);
  const dump = await runCommand(process.execPath, [BERTHD, '--config', join(dir, 'd.toml'), 'config', 'dump']);
  assert.equal(dump.code, 0, dump.stderr);
  assert.match(dump.stdout, /content_sharing_policy = "shared"/);
});

test('namespace delete refuses... and health after requests', async () => {
  // Namespaces that hold nothing can always be removed.
  const ns = d.connect().service(NamespacesDefinition);
  await ns.create({ namespace: { name: 'empty-one' } });
  await ns.delete({ name: 'empty-one' });
  await assert.rejects(ns.delete({ name: 'empty-one' }), (e: Error) => /not found/.test(e.message));
  assert.ok(!isFailedPrecondition(new Error('x')));
});
