/**
 * Tasks end to end: the real ctr (and berth) against berthd, running busybox containers
 * through Debian's containerd-shim-runc-v2 and runc, on a rootfs directory built here from
 * /usr/bin/busybox. ctr's --rootfs spec carries no PATH (same under containerd), so commands
 * are given by absolute path.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { berth, ctr, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { BUSYBOX, busyboxRootfs, makeBusyboxArchive, waitFor } from '../helpers/fixtures.js';
import { shimOfTask } from '../helpers/reliability.js';
import { TasksDefinition } from '../../api/gen/services/tasks/v1/tasks.js';
import { ContainersDefinition } from '../../api/gen/services/containers/v1/containers.js';
import { Code, codeOf } from '../../core/errdefs/errdefs.js';



describe('tasks with runc v2 shims', () => {
  let d: TestDaemon;
  let rootfs: string;
  // runc keeps state in /run/containerd/runc/<namespace>/<id>, shared by every daemon on the
  // host: a namespace of our own keeps ids from colliding with other runs.
  const NS = `tasks-${process.pid}`;
  const C = (...args: string[]) => ctr(d.address, args, { namespace: NS });
  const B = (args: string[], input?: string) => berth(d.address, args, { namespace: NS, input });

  /** Removes whatever a failed test left behind, so later tests start clean. */
  const cleanup = async (...ids: string[]) => {
    for (const id of ids) {
      await C('tasks', 'kill', '-s', 'SIGKILL', id);
      await C('tasks', 'rm', '-f', id);
      await C('containers', 'rm', id);
    }
  };

  before(async () => {
    d = await startDaemon();
    rootfs = busyboxRootfs();
  });
  after(async () => {
    await d?.dispose();
    if (rootfs) rmSync(rootfs, { recursive: true, force: true });
  });

  test('berth and ctr containers create give the same OCI spec for the same flags', async () => {
    const flagSets = [
      [],
      ['--env', 'FOO=bar', '--env', 'X=y', '--cwd', '/tmp'],
      ['--net-host'],
      ['--read-only', '--tty'],
      ['--label', 'a=b', '--annotation', 'k=v'],
      ['--mount', 'type=bind,src=/etc,dst=/hostetc,options=rbind:ro'],
      ['--memory-limit', '67108864', '--cap-add', 'CAP_SYS_ADMIN', '--cap-drop', 'CAP_CHOWN', '--allow-new-privs'],
      ['--with-ns', 'network:/proc/1/ns/net'],
      ['--privileged'],
      ['--privileged', '--cap-drop', 'CAP_SYS_ADMIN', '--read-only'],
      ['--device', '/dev/null', '--device', '/dev/net', '--rootfs-propagation', 'shared'],
      ['--rdt-class', 'gold'],
    ];
    for (const [i, flags] of flagSets.entries()) {
      const specOf = async (tool: 'ctr' | 'berth', id: string) => {
        const args = ['containers', 'create', '--rootfs', ...flags, rootfs, id, '/bin/true'];
        const r = tool === 'ctr' ? await C(...args) : await B(args);
        assert.equal(r.code, 0, `${tool} ${args.join(' ')}: ${r.stderr}`);
        const info = await C('containers', 'info', '--spec', id);
        await C('containers', 'rm', id);
        return info.stdout.replaceAll(id, 'ID');
      };
      assert.equal(await specOf('berth', `sb${i}`), await specOf('ctr', `sc${i}`), flags.join(' ') || '(no flags)');
    }
  });

  test('ctr run --rm prints the output and removes everything', async () => {
    const r = await C('run', '--rm', '--rootfs', rootfs, 'c1', '/bin/echo', 'hello');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello\n');
    assert.equal((await C('containers', 'ls', '-q')).stdout, '');
    assert.equal((await C('tasks', 'ls', '-q')).stdout, '');
    const bundles = join(d.state, 'io.containerd.runtime.v2.task', NS);
    await waitFor('bundle removal', async () => (existsSync(join(bundles, 'c1')) ? undefined : true));
  });

  test('the exit status propagates (ctr run)', async () => {
    const r = await C('run', '--rm', '--rootfs', rootfs, 'c7', '/bin/sh', '-c', 'echo out; echo err >&2; exit 7');
    assert.equal(r.code, 7);
    assert.equal(r.stdout, 'out\n');
    assert.equal(r.stderr, 'err\n');
  });

  test('ctr run: --env, --cwd and stdin', async () => {
    const r = await C('run', '--rm', '--env', 'PATH=/bin', '--cwd', '/tmp', '--rootfs', rootfs, 'c2', 'sh', '-c', 'pwd; echo $PATH');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '/tmp\n/bin\n');
  });

  test('run -d, ls, info, ps, exec, pause/resume, kill, rm (ctr)', async () => {
    try {
      let r = await C('run', '-d', '--rootfs', rootfs, 'd1', '/bin/sleep', '300');
      assert.equal(r.code, 0, r.stderr);
      r = await C('tasks', 'ls');
      assert.match(r.stdout, /^TASK {4}PID {4,}STATUS {4}\n/);
      const line = r.stdout.split('\n').find((l) => l.startsWith('d1 '));
      assert.match(line ?? '', /^d1\s+\d+\s+RUNNING$/);
      const pid = Number(line!.split(/\s+/)[1]);
      r = await C('containers', 'info', 'd1');
      assert.match(r.stdout, /"Name": "io.containerd.runc.v2"/);
      r = await C('tasks', 'ps', 'd1');
      assert.match(r.stdout, new RegExp(`^${pid}\\s+-$`, 'm'));
      r = await C('tasks', 'exec', '--exec-id', 'x1', 'd1', '/bin/sh', '-c', 'echo in-exec; exit 3');
      assert.equal(r.code, 3);
      assert.equal(r.stdout, 'in-exec\n');
      assert.equal((await C('tasks', 'pause', 'd1')).code, 0);
      assert.match((await C('tasks', 'ls')).stdout, /^d1\s+\d+\s+PAUSED$/m);
      assert.equal((await C('tasks', 'resume', 'd1')).code, 0);
      assert.match((await C('tasks', 'ls')).stdout, /^d1\s+\d+\s+RUNNING$/m);
      r = await C('tasks', 'metrics', 'd1');
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /pids.current/);
      // Running tasks cannot be removed.
      assert.notEqual((await C('containers', 'rm', 'd1')).code, 0);
      assert.equal((await C('tasks', 'kill', '-s', 'SIGKILL', 'd1')).code, 0);
      await waitFor('STOPPED', async () => (/^d1\s+\d+\s+STOPPED$/m.test((await C('tasks', 'ls')).stdout) ? true : undefined));
      r = await C('tasks', 'rm', 'd1');
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /exit with non-zero exit code 137/);
      assert.equal((await C('containers', 'rm', 'd1')).code, 0);
      assert.equal((await C('containers', 'ls', '-q')).stdout, '');
    } finally {
      await cleanup('d1');
    }
  });

  test('Tasks API semantics: Get fields, zero exited_at, NotFound text, exec ids, checkpoint', async () => {
    const conn = d.connect(NS);
    const tasks = conn.service(TasksDefinition);
    assert.equal((await C('run', '-d', '--rootfs', rootfs, 'g1', '/bin/sleep', '300')).code, 0);
    try {
      const { process: p } = await tasks.get({ containerId: 'g1' });
      assert.equal(p!.id, 'g1');
      assert.equal(p!.containerId, '');
      assert.equal(p!.status, 2);
      assert.equal(p!.exitedAt?.getTime(), -62135596800000);
      const { tasks: list } = await tasks.list({});
      assert.deepEqual(list.map((t) => t.id), ['g1']);
      await assert.rejects(tasks.exec({ containerId: 'g1', execId: '' }), (e) => codeOf(e) === Code.INVALID_ARGUMENT && /exec id cannot be empty/.test((e as Error).message));
      await assert.rejects(tasks.exec({ containerId: 'g1', execId: 'bad id' }), (e) => codeOf(e) === Code.INVALID_ARGUMENT);
      await assert.rejects(tasks.get({ containerId: 'g1', execId: 'nope' }), (e) => codeOf(e) === Code.NOT_FOUND);
      await assert.rejects(tasks.checkpoint({ containerId: 'g1' }), (e) => codeOf(e) === Code.UNIMPLEMENTED);
      await assert.rejects(
        tasks.create({ containerId: 'g1' }),
        (e) => codeOf(e) === Code.ALREADY_EXISTS && /task g1: already exists/.test((e as Error).message),
      );
      const waited = tasks.wait({ containerId: 'g1' });
      await tasks.kill({ containerId: 'g1', signal: 9 });
      const w = await waited;
      assert.equal(w.exitStatus, 137);
      assert.ok(w.exitedAt!.getTime() > Date.now() - 60_000);
      const del = await tasks.delete({ containerId: 'g1' });
      assert.equal(del.exitStatus, 137);
      assert.equal(del.id, '');
      assert.ok(del.pid > 0);
      await assert.rejects(tasks.get({ containerId: 'g1' }), (e) => codeOf(e) === Code.NOT_FOUND && (e as Error).message === 'task g1 not found');
      await assert.rejects(tasks.delete({ containerId: 'g1' }), (e) => codeOf(e) === Code.NOT_FOUND);
      await assert.rejects(tasks.get({ containerId: 'none' }), (e) => (e as Error).message === `container "none" in namespace "${NS}": not found`);
    } finally {
      await conn.service(ContainersDefinition).delete({ id: 'g1' }).catch(() => undefined);
    }
  });

  test('ctr events sees the whole run --rm sequence, once each', async () => {
    const ev = spawn('ctr', ['-a', d.address, '-n', NS, 'events'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    ev.stdout.on('data', (b) => (out += b));
    await new Promise((r) => setTimeout(r, 400));
    const r = await C('run', '--rm', '--rootfs', rootfs, 'ev1', '/bin/true');
    assert.equal(r.code, 0, r.stderr);
    await waitFor('/tasks/delete and /containers/delete', async () => (out.includes('/containers/delete') && out.includes('/tasks/delete') ? true : undefined));
    ev.kill();
    const topics = out.trim().split('\n').map((l) => l.split(' ')[5]);
    // The shim raises /tasks/delete and forwards it on its own connection while ctr goes on to
    // delete the container, so under load /containers/delete can overtake it (as with
    // containerd, whose shims forward events the same way). Every other step is in order.
    assert.deepEqual(topics.slice(0, 4), ['/containers/create', '/tasks/create', '/tasks/start', '/tasks/exit']);
    assert.deepEqual([...topics.slice(4)].sort(), ['/containers/delete', '/tasks/delete'], out);
    assert.ok(out.includes(`/tasks/create {"container_id":"ev1","bundle":"${join(d.state, 'io.containerd.runtime.v2.task', NS, 'ev1')}"`), out);
  });

  test('a shim that dies leaves a TaskExit/TaskDelete pair and no task', async () => {
    try {
      assert.equal((await C('run', '-d', '--rootfs', rootfs, 'k1', '/bin/sleep', '300')).code, 0);
      const ev = spawn('ctr', ['-a', d.address, '-n', NS, 'events', 'topic~=/tasks/'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      ev.stdout.on('data', (b) => (out += b));
      await new Promise((r) => setTimeout(r, 400));
      const shimPid = shimOfTask(d.state, NS, 'k1') ?? 0;
      assert.ok(shimPid > 0, 'shim pid found');
      process.kill(shimPid, 'SIGKILL');
      await waitFor('exit and delete events', async () => (out.includes('/tasks/delete') ? true : undefined));
      ev.kill();
      assert.match(out, /\/tasks\/exit \{"container_id":"k1","id":"k1","pid":\d+,"exit_status":137/);
      assert.equal((await C('tasks', 'ls', '-q')).stdout, '');
      assert.equal((await C('containers', 'rm', 'k1')).code, 0);
    } finally {
      await cleanup('k1');
    }
  });

  test('berth run --rootfs: output, exit status, stdin, detached lifecycle', async () => {
    try {
      let r = await B(['run', '--rm', '--rootfs', rootfs, 'b1', '/bin/echo', 'hello-berth']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'hello-berth\n');
      r = await B(['run', '--rm', '--rootfs', rootfs, 'b2', '/bin/sh', '-c', 'echo e >&2; exit 7']);
      assert.equal(r.code, 7);
      assert.equal(r.stderr, 'e\n');
      r = await B(['run', '--rm', '--rootfs', rootfs, 'b3', '/bin/cat'], 'piped-in\n');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'piped-in\n');

      r = await B(['run', '-d', '--env', 'PATH=/bin', '--rootfs', rootfs, 'b4', 'sleep', '300']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal((await B(['tasks', 'ls'])).stdout, (await C('tasks', 'ls')).stdout);
      assert.equal((await B(['containers', 'ls'])).stdout, (await C('containers', 'ls')).stdout);
      assert.equal((await B(['containers', 'info', 'b4'])).stdout, (await C('containers', 'info', 'b4')).stdout);
      assert.equal((await B(['tasks', 'ps', 'b4'])).stdout, (await C('tasks', 'ps', 'b4')).stdout);
      r = await B(['tasks', 'exec', '--exec-id', 'e1', 'b4', 'sh', '-c', 'echo from-exec; exit 5']);
      assert.equal(r.code, 5);
      assert.equal(r.stdout, 'from-exec\n');
      assert.equal((await B(['tasks', 'pause', 'b4'])).code, 0);
      assert.match((await B(['tasks', 'ls'])).stdout, /^b4\s+\d+\s+PAUSED$/m);
      // JSON metrics: the same document as ctr's (field names, omitted zeros), numbers aside.
      const shape = (text: string) => text.replace(/\d+/g, 'N');
      const [bj, cj] = [await B(['tasks', 'metrics', '--format', 'json', 'b4']), await C('tasks', 'metrics', '--format', 'json', 'b4')];
      assert.equal(shape(bj.stdout), shape(cj.stdout));
      assert.equal((await B(['tasks', 'resume', 'b4'])).code, 0);
      r = await B(['tasks', 'metrics', 'b4']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^pids.current\s+\d+/m);
      assert.equal((await B(['tasks', 'kill', '-s', 'KILL', 'b4'])).code, 0);
      await waitFor('STOPPED', async () => (/^b4\s+\d+\s+STOPPED$/m.test((await B(['tasks', 'ls'])).stdout) ? true : undefined));
      r = await B(['tasks', 'rm', 'b4']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal((await B(['containers', 'rm', 'b4'])).code, 0);
      assert.equal((await C('containers', 'ls', '-q')).stdout, '');
    } finally {
      await cleanup('b1', 'b2', 'b3', 'b4');
    }
  });

  test('berth run --uidmap/--gidmap: a user namespace as ctr makes it (spec, shifted snapshot, errors)', async () => {
    const archive = makeBusyboxArchive(join(rootfs, '..', `berth-bb-${process.pid}.oci.tar`));
    // The container's root is host uid 100000: it must be able to reach its bundle, and the
    // test daemon lives in a mkdtemp directory (0700). berthd's own directories are 0711.
    chmodSync(d.dir, 0o711);
    try {
      assert.equal((await C('images', 'import', archive)).code, 0);
      const map = ['--uidmap', '0:100000:65536', '--gidmap', '0:100000:65536'];
      // Inside, root is root and owns the files; outside, they belong to the host IDs.
      const r = await B(['run', '--rm', ...map, BUSYBOX, 'un1', 'sh', '-c', 'id -u; id -g; stat -c %u:%g /bin/busybox; echo out > /dev/stdout']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, '0\n0\n0:0\nout\n');
      // Detached, both clients: the same spec, and the container snapshot on the same shifted parent.
      const look = async (tool: 'ctr' | 'berth', id: string) => {
        const args = ['run', '-d', ...map, BUSYBOX, id, 'sleep', '60'];
        const run = tool === 'ctr' ? await C(...args) : await B(args);
        assert.equal(run.code, 0, `${tool}: ${run.stderr}`);
        const spec = (await C('containers', 'info', '--spec', id)).stdout.replaceAll(id, 'ID');
        const parent = JSON.parse((await C('snapshots', 'info', id)).stdout).Parent as string;
        await cleanup(id);
        return { spec, parent };
      };
      const [b, c] = [await look('berth', 'un2'), await look('ctr', 'un3')];
      assert.equal(b.spec, c.spec);
      assert.match(b.spec, /"uidMappings": \[\s*\{\s*"containerID": 0,\s*"hostID": 100000,\s*"size": 65536/);
      assert.equal(b.parent, c.parent);
      assert.match(b.parent, /^sha256:[0-9a-f]{64}-100000-100000$/);
      // A mapping that does not parse: ctr's words.
      const bad = ['--uidmap', '0:1e5:10', '--gidmap', '0:0:10'];
      const [be, ce] = [await B(['run', '--rm', ...bad, BUSYBOX, 'un4', 'true']), await C('run', '--rm', ...bad, BUSYBOX, 'un4', 'true')];
      assert.notEqual(be.code, 0);
      assert.equal(be.stderr.replace(/^berth: /, ''), ce.stderr.replace(/^ctr: /, ''));
      assert.match(be.stderr, /invalid host id for user namespace remapping: strconv.ParseUint: parsing "1e5": invalid syntax/);
    } finally {
      await cleanup('un1', 'un2', 'un3', 'un4');
      rmSync(archive, { force: true });
    }
  });

  test('berth containers create + label + tasks start', async () => {
    try {
      let r = await B(['containers', 'create', '--label', 'team=a', '--rootfs', rootfs, 'cc1', '/bin/echo', 'started']);
      assert.equal(r.code, 0, r.stderr);
      r = await B(['containers', 'label', 'cc1', 'team=b', 'x=1']);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.trim().split(',').sort(), ['team=b', 'x=1']);
      r = await C('containers', 'info', 'cc1');
      assert.match(r.stdout, /"team": "b"/);
      r = await B(['tasks', 'start', 'cc1']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'started\n');
      assert.equal((await B(['containers', 'rm', 'cc1'])).code, 0);
      await waitFor('bundle removal', async () =>
        (readdirSync(join(d.state, 'io.containerd.runtime.v2.task', NS)).includes('cc1') ? undefined : true));
    } finally {
      await cleanup('cc1');
    }
  });
});
