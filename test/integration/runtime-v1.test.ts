/**
 * io.containerd.runtime.v1.linux against the real containerd-shim (Debian's containerd
 * package) and runc, driven by the real ctr: run --rm, exit codes, a detached task's whole
 * life (exec, pause, kill, rm), the bundle and the shim's command line, the event stream
 * (the shim publishes /tasks/exit through `berthd publish`), and a daemon crash with the
 * shims surviving it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BERTHD, ctr, REPO, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { waitFor as poll } from '../helpers/fixtures.js';

/** v1 shims publish through a process per event, so give conditions longer than the default. */
const waitFor = <T,>(what: string, fn: () => Promise<T | undefined> | T | undefined) => poll(what, fn, 15_000);
import { killAndDeleteTask } from '../helpers/tasks.js';

const V1 = 'io.containerd.runtime.v1.linux';
const IMAGE = 'docker.io/library/busybox:latest';


const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return !/^\S+ \(.*\) [ZX]/.test(stat);
};

describe('runtime v1 (containerd-shim)', () => {
  let d: TestDaemon;
  let work: string;
  const NS = `v1-${process.pid}`;
  const C = (...args: string[]) => ctr(d.address, args, { namespace: NS });
  const bundleOf = (id: string) => join(d.state, V1, NS, id);
  const workOf = (id: string) => join(d.root, V1, NS, id);
  const cleanup: string[] = [];

  before(async () => {
    d = await startDaemon();
    work = mkdtempSync(join(tmpdir(), 'berth-v1-'));
    const archive = join(work, 'busybox.tar');
    const made = spawnSync(process.execPath, [join(REPO, 'scripts', 'make-image.mjs'), '--out', archive]);
    assert.equal(made.status, 0, made.stderr.toString());
    const r = await C('images', 'import', archive);
    assert.equal(r.code, 0, r.stderr);
  });

  after(async () => {
    for (const id of cleanup) {
      await C('tasks', 'kill', '-s', 'SIGKILL', id).catch(() => undefined);
      await C('tasks', 'rm', '-f', id).catch(() => undefined);
      await C('containers', 'rm', id).catch(() => undefined);
    }
    await d?.dispose();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('ctr run --rm prints the output and propagates the exit code', async () => {
    let r = await C('run', '--runtime', V1, '--rm', IMAGE, 'v1-1', 'echo', 'from-v1');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'from-v1\n');
    r = await C('run', '--runtime', V1, '--rm', IMAGE, 'v1-7', 'sh', '-c', 'echo out; echo err >&2; exit 7');
    assert.equal(r.code, 7, r.stderr);
    assert.equal(r.stdout, 'out\n');
    assert.match(r.stderr, /err/);
    r = await C('containers', 'ls', '-q');
    assert.doesNotMatch(r.stdout, /v1-1|v1-7/);
    assert.ok(!existsSync(bundleOf('v1-1')) && !existsSync(workOf('v1-1')), 'bundle and work dir removed');
  });

  test('run -d: bundle, shim command line, exec, pause/resume, kill, rm', async () => {
    const id = 'v1-d';
    cleanup.push(id);
    let r = await C('run', '-d', '--runtime', V1, IMAGE, id, 'sleep', '300');
    assert.equal(r.code, 0, r.stderr);
    r = await C('tasks', 'ls');
    const pid = Number(r.stdout.match(new RegExp(`^${id}\\s+(\\d+)\\s+RUNNING$`, 'm'))?.[1]);
    assert.ok(pid > 0, r.stdout);
    r = await C('containers', 'info', id);
    assert.match(r.stdout, new RegExp(`"Name": "${V1}"`));

    const bundle = bundleOf(id);
    for (const f of ['config.json', 'address', 'shim.pid', 'init.pid', 'log.json']) assert.ok(existsSync(join(bundle, f)), `bundle has ${f}`);
    assert.equal(Number(readFileSync(join(bundle, 'init.pid'), 'utf8')), pid);
    assert.ok(/ overlay /.test(readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.includes(` ${join(bundle, 'rootfs')} `)) ?? ''),
      'the shim mounted the rootfs in the bundle');
    assert.equal(statSync(bundle).mode & 0o777, 0o700);
    assert.ok(statSync(join(workOf(id), 'shim.stdout.log')).isFIFO());
    assert.ok(statSync(join(workOf(id), 'shim.stderr.log')).isFIFO());
    const address = readFileSync(join(bundle, 'address'), 'utf8');
    const digest = createHash('sha256').update(join(d.address, NS, id)).digest('hex');
    assert.equal(address, `unix:///run/containerd/s/${digest}`);
    assert.equal(statSync(address.slice('unix://'.length)).mode & 0o777, 0o600);
    const shimPid = Number(readFileSync(join(bundle, 'shim.pid'), 'utf8'));
    const argv = readFileSync(`/proc/${shimPid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    assert.deepEqual(argv.slice(1), ['-namespace', NS, '-workdir', workOf(id), '-address', d.address, '-containerd-binary', BERTHD]);
    assert.match(argv[0]!, /containerd-shim$/);
    assert.equal(readlinkSync(`/proc/${shimPid}/cwd`), bundle);
    assert.ok(readFileSync(`/proc/${shimPid}/environ`, 'utf8').split('\0').includes('GOMAXPROCS=2'));
    assert.ok(statSync(BERTHD).mode & 0o111, 'bin/berthd.js is executable');

    r = await C('tasks', 'exec', '--exec-id', 'x1', id, 'sh', '-c', 'echo in-exec; exit 3');
    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.stdout, 'in-exec\n');
    r = await C('tasks', 'ps', id);
    assert.match(r.stdout, new RegExp(`^${pid}\\s`, 'm'));
    assert.equal((await C('tasks', 'pause', id)).code, 0);
    assert.match((await C('tasks', 'ls')).stdout, new RegExp(`^${id}\\s+${pid}\\s+PAUSED$`, 'm'));
    assert.equal((await C('tasks', 'resume', id)).code, 0);
    assert.match((await C('tasks', 'ls')).stdout, new RegExp(`^${id}\\s+${pid}\\s+RUNNING$`, 'm'));
    assert.equal((await C('tasks', 'kill', '-s', 'SIGKILL', id)).code, 0);
    await waitFor('STOPPED', async () => (new RegExp(`^${id}\\s+${pid}\\s+STOPPED$`, 'm').test((await C('tasks', 'ls')).stdout) ? true : undefined));
    r = await C('tasks', 'rm', id);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await C('containers', 'rm', id)).code, 0);
    assert.ok(!existsSync(bundle) && !existsSync(workOf(id)), 'bundle and work dir removed');
    assert.ok(!existsSync(address.slice('unix://'.length)), 'shim socket removed');
    await waitFor('shim exit', () => (alive(shimPid) ? undefined : true));
    assert.doesNotMatch((await C('tasks', 'ls')).stdout, new RegExp(`^${id}\\s`, 'm'));
  });

  test('events: create, start, exit (from the shim via berthd publish), delete, in that order', async () => {
    const events: ChildProcess = spawn('ctr', ['-a', d.address, '-n', NS, 'events'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    events.stdout!.on('data', (b) => (out += b));
    try {
      await new Promise((r) => setTimeout(r, 300));
      const r = await C('run', '--runtime', V1, '--rm', IMAGE, 'v1-ev', 'true');
      assert.equal(r.code, 0, r.stderr);
      await waitFor('/containers/delete event', () => (/\/containers\/delete/.test(out) ? true : undefined));
    } finally {
      events.kill();
    }
    const order = out.split('\n').filter((l) => l.includes('"v1-ev"')).map((l) => l.split(' ')[5]).filter((t) => t?.startsWith('/tasks/'));
    assert.deepEqual(order, ['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete'], out);
    assert.match(out, /\/tasks\/exit \{"container_id":"v1-ev","id":"v1-ev","pid":\d+,"exited_at"/);
  });

  test('kill -9 of berthd: a running task is reloaded with its pid; a shim that died is cleaned up', async () => {
    cleanup.push('r1', 'r2');
    assert.equal((await C('run', '-d', '--runtime', V1, IMAGE, 'r1', 'sleep', '300')).code, 0);
    assert.equal((await C('run', '-d', '--runtime', V1, IMAGE, 'r2', 'sleep', '300')).code, 0);
    const before = (await C('tasks', 'ls')).stdout;
    const pidOf = (text: string, id: string) => text.match(new RegExp(`^${id}\\s+(\\d+)\\s+RUNNING$`, 'm'))?.[1];
    const pid1 = pidOf(before, 'r1');
    assert.ok(pid1 && pidOf(before, 'r2'), before);
    const shim2 = Number(readFileSync(join(bundleOf('r2'), 'shim.pid'), 'utf8'));

    await d.kill9();
    process.kill(shim2, 'SIGKILL');
    await waitFor('r2 shim exit', () => (alive(shim2) ? undefined : true));
    await d.restart();

    let r = await C('tasks', 'ls');
    assert.equal(pidOf(r.stdout, 'r1'), pid1, r.stdout);
    assert.doesNotMatch(r.stdout, /^r2\s/m);
    assert.ok(!existsSync(bundleOf('r2')) && !existsSync(workOf('r2')), 'dead shim bundle removed');
    assert.match(d.log(), /reconnected to shim/);

    r = await C('tasks', 'exec', '--exec-id', 'after', 'r1', 'echo', 'after-restart');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'after-restart\n');

    await killAndDeleteTask(d.connect(NS), 'r1', pid1);
    assert.ok(!existsSync(bundleOf('r1')));
    assert.notEqual((await C('tasks', 'rm', 'r2')).code, 0, 'r2 has no task any more');
    assert.equal((await C('containers', 'rm', 'r1', 'r2')).code, 0);
  });
});

describe('runtime v1 with no_shim = true', () => {
  test('task creation is refused with FAILED_PRECONDITION', async () => {
    const d = await startDaemon({ extraConfig: `[plugins."${V1}"]\n  no_shim = true` });
    try {
      const rootfs = mkdtempSync(join(tmpdir(), 'berth-v1-rootfs-'));
      try {
        const r = await ctr(d.address, ['run', '--runtime', V1, '--rootfs', rootfs, 'ns1', '/bin/true'], { namespace: 'noshim' });
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /no_shim is not supported by berth/);
        assert.match(d.log(), /no_shim = true is not supported by berth/);
        await ctr(d.address, ['containers', 'rm', 'ns1'], { namespace: 'noshim' });
      } finally {
        rmSync(rootfs, { recursive: true, force: true });
      }
    } finally {
      await d.dispose();
    }
  });
});
