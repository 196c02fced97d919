/**
 * containerd-shim-berth-v2 driven directly over ttrpc, the way the daemon drives it, with a
 * stand-in for the daemon's events service recording every forwarded event. Real runc, real
 * mounts, real FIFOs: checks each Task method's answers and the exact event order, the `start`
 * and `delete` actions, a terminal (ResizePty), CloseIO, Update and Stats. Needs `npm run build`
 * first, root and runc; the rootfs is made from /usr/bin/busybox.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, constants, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Metrics as MetricsV1 } from '../../api/gen/cgroups/v1/metrics.js';
import { Metrics as MetricsV2 } from '../../api/gen/cgroups/v2/metrics.js';
import { TaskCreate, TaskDelete, TaskExit } from '../../api/gen/events/task.js';
import { ProcessDetails } from '../../api/gen/runc/options/oci.js';
import { DeleteResponse, TaskService } from '../../api/gen/runtime/v2/task/shim.js';
import { EventsService, type Envelope } from '../../api/gen/services/ttrpc/events/v1/events.js';
import { Status } from '../../api/gen/types/task/task.js';
import { TtrpcClient, TtrpcServer, typedClient, type TypedClient } from '../../api/ttrpc/index.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const SHIM = join(REPO, 'bin', 'containerd-shim-berth-v2.js');
const NAMESPACE = `shimttrpc-${process.pid}`;
const APPLETS = ['sh', 'echo', 'sleep', 'cat', 'stty', 'true', 'wc'];
const ZERO_TIME = -62_135_596_800_000;

interface Result {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

function runShim(args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; input?: Buffer }): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SHIM, ...args], { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.end(opts.input ?? Buffer.alloc(0));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`shim ${args.join(' ')} timed out: ${stderr}`));
    }, 30_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr });
    });
  });
}

async function mkfifos(...paths: string[]): Promise<void> {
  await Promise.all(paths.map((p) => new Promise<void>((resolve, reject) => {
    const child = spawn('mkfifo', ['-m', '0600', p], { stdio: 'ignore' });
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`mkfifo ${p}: ${code}`))));
  })));
}

/** Reads a FIFO the way a client does: opened (O_RDWR, never blocks) before Create. */
function fifoReader(path: string): { text: () => string; close: () => void } {
  const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
  const socket = new Socket({ fd, readable: true, writable: false });
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString()));
  socket.on('error', () => undefined);
  return { text: () => text, close: () => socket.destroy() };
}

async function until(what: string, ready: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ready()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * The top-level fields of a v1 Metrics message. Memory limits are near 2^63, beyond what the
 * generated decoder accepts as JS numbers, so only the small sub-messages are decoded.
 */
function codeOf(err: unknown): unknown {
  return (err as { code?: unknown }).code;
}

describe('containerd-shim-berth-v2 over ttrpc', { timeout: 180_000 }, () => {
  let dir: string;
  let rootfsSource: string;
  let eventsServer: TtrpcServer;
  const events: Envelope[] = [];
  const grpcAddress = () => join(dir, 'daemon.sock');
  const shimEnv = () => ({ ...process.env, TTRPC_ADDRESS: join(dir, 'daemon.sock.ttrpc') });
  const clients: TtrpcClient[] = [];

  /** A bundle like the daemon makes: config.json from `runc spec`, adjusted. */
  async function makeBundle(id: string, processSpec: { args: string[]; terminal?: boolean }): Promise<string> {
    const bundle = join(dir, 'state', NAMESPACE, id);
    mkdirSync(join(bundle, 'rootfs'), { recursive: true });
    await new Promise<void>((resolve, reject) => {
      const child = spawn('runc', ['spec', '--bundle', bundle], { stdio: 'ignore' });
      child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`runc spec: ${code}`))));
    });
    const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as Record<string, any>;
    spec.root = { path: join(bundle, 'rootfs'), readonly: false };
    spec.process.args = processSpec.args;
    spec.process.terminal = processSpec.terminal ?? false;
    spec.process.env = ['PATH=/bin', 'TERM=xterm'];
    spec.linux.namespaces = spec.linux.namespaces.filter((ns: { type: string }) => ns.type !== 'network');
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
    return bundle;
  }

  async function startShim(id: string, bundle: string): Promise<TypedClient<typeof TaskService>> {
    const r = await runShim(['-namespace', NAMESPACE, '-address', grpcAddress(), '-publish-binary', '/bin/true', '-id', id, 'start'], { cwd: bundle, env: shimEnv() });
    assert.equal(r.code, 0, r.stderr);
    const address = r.stdout.toString();
    const digest = createHash('sha256').update(`${grpcAddress()}/${NAMESPACE}/${id}`).digest('hex');
    assert.equal(address, `unix:///run/containerd/s/${digest}`);
    assert.equal(readFileSync(join(bundle, 'address'), 'utf8'), address);
    const client = await TtrpcClient.connect(address, { timeoutMs: 5_000 });
    clients.push(client);
    return typedClient(client, TaskService, { namespace: NAMESPACE, timeoutMs: 30_000 });
  }

  const topicsFor = (id: string) => events
    .filter((e) => {
      const value = e.event?.value ?? Buffer.alloc(0);
      // container_id is field 1 in every task event.
      return value.length > 2 && value[0] === 0x0a && value.subarray(2, 2 + value[1]!).toString() === id;
    })
    .map((e) => e.topic);

  before(async () => {
    assert.ok(existsSync(join(REPO, 'dist', 'containerd-shim-berth-v2.js')), 'dist/containerd-shim-berth-v2.js missing: run `npm run build` first');
    assert.equal(process.getuid?.(), 0, 'the shim test needs root (mounts, runc)');
    dir = mkdtempSync(join(tmpdir(), 'berth-shimttrpc-'));
    rootfsSource = join(dir, 'rootfs-src');
    mkdirSync(join(rootfsSource, 'bin'), { recursive: true });
    copyFileSync('/usr/bin/busybox', join(rootfsSource, 'bin', 'busybox'));
    for (const applet of APPLETS) symlinkSync('busybox', join(rootfsSource, 'bin', applet));
    for (const d of ['proc', 'dev', 'sys', 'tmp']) mkdirSync(join(rootfsSource, d));
    eventsServer = new TtrpcServer();
    eventsServer.register(EventsService, {
      forward: async (req, ctx) => {
        assert.equal(ctx.namespace, NAMESPACE);
        if (req.envelope) events.push(req.envelope);
        return {};
      },
    });
    await eventsServer.listen(`unix://${join(dir, 'daemon.sock.ttrpc')}`);
  });

  after(async () => {
    for (const c of clients) c.close();
    // Shims of this test carry our fake daemon address; end them by pid.
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').includes(`-address ${grpcAddress()}`)) process.kill(Number(entry), 'SIGKILL');
      } catch { /* gone */ }
    }
    for (const id of ['io1', 'ex1', 'tty1', 'cio1']) {
      rmSync(`/run/containerd/s/${createHash('sha256').update(`${grpcAddress()}/${NAMESPACE}/${id}`).digest('hex')}`, { force: true });
    }
    await eventsServer?.close({ graceMs: 100 });
    if (dir) {
      const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((p) => p.startsWith(dir)).reverse();
      for (const m of mounts) {
        await new Promise((resolve) => spawn('umount', ['-l', m], { stdio: 'ignore' }).once('close', resolve));
      }
      // runc state of containers a failed test left behind
      await new Promise((resolve) => spawn('sh', ['-c', `for c in $(runc --root /run/containerd/runc/${NAMESPACE} list -q 2>/dev/null); do runc --root /run/containerd/runc/${NAMESPACE} delete -f $c; done`], { stdio: 'ignore' }).once('close', resolve));
      rmSync(dir, { recursive: true, force: true });
    }
    rmSync(join('/run/containerd/runc', NAMESPACE), { recursive: true, force: true });
  });

  it('runs a process with FIFO stdio and publishes create, start, exit, delete in order', async () => {
    const id = 'io1';
    const bundle = await makeBundle(id, { args: ['sh', '-c', 'read line; echo "got $line"; echo oops >&2; exit 3'] });
    const fifos = join(dir, 'fifo', id);
    mkdirSync(fifos, { recursive: true });
    const [stdin, stdout, stderr] = ['stdin', 'stdout', 'stderr'].map((n) => join(fifos, n)) as [string, string, string];
    await mkfifos(stdin, stdout, stderr);
    const out = fifoReader(stdout);
    const err = fifoReader(stderr);
    const task = await startShim(id, bundle);

    const created = await task.create({
      id, bundle, rootfs: [{ type: 'bind', source: rootfsSource, target: '', options: ['rbind', 'rw'] }],
      terminal: false, stdin, stdout, stderr, checkpoint: '', parentCheckpoint: '', options: undefined,
    });
    assert.ok(created.pid > 0);
    assert.equal(readFileSync(join(bundle, 'options.json'), 'utf8'), '{}');
    assert.equal(Number(readFileSync(join(bundle, 'init.pid'), 'utf8')), created.pid);
    const state = await task.state({ id, execId: '' });
    assert.equal(state.status, Status.CREATED);
    assert.equal(state.pid, created.pid);
    assert.equal(state.stdout, stdout);
    assert.equal(state.exitedAt?.getTime(), ZERO_TIME);
    const connect = await task.connect({ id });
    assert.equal(connect.taskPid, created.pid);
    assert.ok(connect.shimPid > 0 && connect.shimPid !== process.pid);

    const waited = task.wait({ id, execId: '' });
    const started = await task.start({ id, execId: '' });
    assert.equal(started.pid, created.pid);
    const writer = openSync(stdin, constants.O_WRONLY | constants.O_NONBLOCK);
    writeSync(writer, 'hello\n');
    closeSync(writer);
    const exit = await waited;
    assert.equal(exit.exitStatus, 3);
    assert.ok(exit.exitedAt && Math.abs(exit.exitedAt.getTime() - Date.now()) < 10_000);
    await until('stdout', () => out.text() === 'got hello\n');
    await until('stderr', () => err.text() === 'oops\n');

    const stopped = await task.state({ id, execId: '' });
    assert.equal(stopped.status, Status.STOPPED);
    assert.equal(stopped.exitStatus, 3);
    const deleted = await task.delete({ id, execId: '' });
    assert.deepEqual([deleted.pid, deleted.exitStatus], [created.pid, 3]);
    assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(join(bundle, 'rootfs')), 'rootfs still mounted');
    await assert.rejects(task.state({ id, execId: '' }), (e: unknown) => codeOf(e) === 5);
    await task.shutdown({ id, now: false });
    out.close();
    err.close();

    await until('delete event', () => topicsFor(id).includes('/tasks/delete'));
    assert.deepEqual(topicsFor(id), ['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete']);
    const byTopic = (t: string) => events.find((e) => e.topic === t && topicsFor(id).includes(t))!;
    const createEvent = TaskCreate.decode(byTopic('/tasks/create').event!.value);
    assert.equal(createEvent.pid, created.pid);
    assert.equal(createEvent.io?.stdin, stdin);
    assert.equal(byTopic('/tasks/exit').event!.typeUrl, 'containerd.events.TaskExit');
    const exitEvent = TaskExit.decode(byTopic('/tasks/exit').event!.value);
    assert.deepEqual([exitEvent.id, exitEvent.pid, exitEvent.exitStatus], [id, created.pid, 3]);
    const deleteEvent = TaskDelete.decode(byTopic('/tasks/delete').event!.value);
    assert.equal(deleteEvent.exitStatus, 3);
    assert.ok(events.every((e) => e.namespace === NAMESPACE));
    // With no container left, Shutdown ended the shim and removed its socket.
    const address = readFileSync(join(bundle, 'address'), 'utf8');
    await until('socket removal', () => !existsSync(address.slice('unix://'.length)));
  });

  it('manages execs, pids, stats, update, kill and the delete action', async () => {
    const id = 'ex1';
    const bundle = await makeBundle(id, { args: ['sleep', '1000'] });
    const task = await startShim(id, bundle);
    // A second start for the same id finds the running shim and reports its address.
    const again = await runShim(['-namespace', NAMESPACE, '-address', grpcAddress(), '-publish-binary', '/bin/true', '-id', id, 'start'], { cwd: bundle, env: shimEnv() });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout.toString(), readFileSync(join(bundle, 'address'), 'utf8'));

    const rootfs = [{ type: 'bind', source: rootfsSource, target: '', options: ['rbind', 'rw'] }];
    const { pid } = await task.create({ id, bundle, rootfs, terminal: false, stdin: '', stdout: '', stderr: '', checkpoint: '', parentCheckpoint: '', options: undefined });
    await assert.rejects(
      task.create({ id, bundle, rootfs, terminal: false, stdin: '', stdout: '', stderr: '', checkpoint: '', parentCheckpoint: '', options: undefined }),
      (e: unknown) => codeOf(e) === 6,
    );
    await task.start({ id, execId: '' });
    assert.equal((await task.state({ id, execId: '' })).status, Status.RUNNING);

    const processSpec = { args: ['sleep', '500'], cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 }, terminal: false };
    const spec = { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: Buffer.from(JSON.stringify(processSpec)) };
    await task.exec({ id, execId: 'e1', terminal: false, stdin: '', stdout: '', stderr: '', spec });
    await assert.rejects(task.exec({ id, execId: 'e1', terminal: false, stdin: '', stdout: '', stderr: '', spec }), (e: unknown) => codeOf(e) === 6);
    assert.equal((await task.state({ id, execId: 'e1' })).status, Status.CREATED);
    const execStart = await task.start({ id, execId: 'e1' });
    assert.ok(execStart.pid > 0 && execStart.pid !== pid);
    const execState = await task.state({ id, execId: 'e1' });
    assert.deepEqual([execState.id, execState.status, execState.pid], ['e1', Status.RUNNING, execStart.pid]);

    const { processes } = await task.pids({ id });
    assert.ok(processes.some((p) => p.pid === pid && p.info === undefined));
    const execInfo = processes.find((p) => p.pid === execStart.pid);
    assert.equal(execInfo?.info?.typeUrl, 'containerd.runc.v1.ProcessDetails');
    assert.equal(ProcessDetails.decode(execInfo!.info!.value).execId, 'e1');

    const { stats } = await task.stats({ id });
    assert.ok(stats);
    if (stats.typeUrl === 'io.containerd.cgroups.v1.Metrics') {
      const m = MetricsV1.decode(stats.value);
      assert.equal(m.pids?.current, 2n);
      assert.ok((m.cpu?.usage?.total ?? 0n) > 0n);
      assert.ok(m.memory, 'no memory stats');
    } else {
      assert.equal(stats.typeUrl, 'io.containerd.cgroups.v2.Metrics');
      assert.equal(MetricsV2.decode(stats.value).pids?.current, 2n);
    }

    const resources = { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources', value: Buffer.from(JSON.stringify({ pids: { limit: 42 } })) };
    await task.update({ id, resources, annotations: {} });
    if (stats.typeUrl === 'io.containerd.cgroups.v1.Metrics') {
      assert.equal(MetricsV1.decode((await task.stats({ id })).stats!.value).pids?.limit, 42n);
    }

    await assert.rejects(task.checkpoint({ id, path: join(dir, 'cp'), options: undefined }), (e: unknown) => codeOf(e) === 12);
    await assert.rejects(task.state({ id: 'nope', execId: '' }), (e: unknown) => codeOf(e) === 5);
    await assert.rejects(task.state({ id, execId: 'nope' }), (e: unknown) => codeOf(e) === 5);

    // An exec is signalled directly (pidfd): SIGTERM → 128 + 15.
    const execWait = task.wait({ id, execId: 'e1' });
    await task.kill({ id, execId: 'e1', signal: 15, all: false });
    assert.equal((await execWait).exitStatus, 143);
    await assert.rejects(task.kill({ id, execId: 'e1', signal: 15, all: false }), (e: unknown) => codeOf(e) === 5);
    const execDeleted = await task.delete({ id, execId: 'e1' });
    assert.equal(execDeleted.exitStatus, 143);

    await task.pause({ id });
    assert.equal((await task.state({ id, execId: '' })).status, Status.PAUSED);
    await task.resume({ id });

    // Shutdown without `now` keeps a shim that still has a container.
    await task.shutdown({ id, now: false });
    assert.equal((await task.state({ id, execId: '' })).status, Status.RUNNING);

    const initWait = task.wait({ id, execId: '' });
    await task.kill({ id, execId: '', signal: 9, all: false });
    assert.equal((await initWait).exitStatus, 137);
    await task.delete({ id, execId: '' });
    await until('events', () => topicsFor(id).includes('/tasks/delete'));
    assert.deepEqual(topicsFor(id), [
      '/tasks/create', '/tasks/start', '/tasks/exec-added', '/tasks/exec-started', '/tasks/exit',
      '/tasks/paused', '/tasks/resumed', '/tasks/exit', '/tasks/delete',
    ]);
    await task.shutdown({ id, now: true });

    // The daemon's cleanup action, run after the shim is gone.
    const cleaned = await runShim(['-namespace', NAMESPACE, '-address', grpcAddress(), '-publish-binary', '/bin/true', '-id', id, '-bundle', bundle, 'delete'], { cwd: bundle, env: shimEnv() });
    assert.equal(cleaned.code, 0, cleaned.stderr);
    const response = DeleteResponse.decode(cleaned.stdout);
    assert.equal(response.pid, pid);
    assert.equal(response.exitStatus, 137);
    assert.ok(response.exitedAt && Math.abs(response.exitedAt.getTime() - Date.now()) < 10_000);
  });

  it('gives a terminal to the process and resizes it; CloseIO ends stdin', async () => {
    const id = 'tty1';
    const bundle = await makeBundle(id, { args: ['sh', '-c', 'sleep 0.5; stty size; cat'], terminal: true });
    const fifos = join(dir, 'fifo', id);
    mkdirSync(fifos, { recursive: true });
    const stdin = join(fifos, 'stdin');
    const stdout = join(fifos, 'stdout');
    await mkfifos(stdin, stdout);
    const out = fifoReader(stdout);
    const task = await startShim(id, bundle);
    await task.create({
      id, bundle, rootfs: [{ type: 'bind', source: rootfsSource, target: '', options: ['rbind', 'rw'] }],
      terminal: true, stdin, stdout, stderr: '', checkpoint: '', parentCheckpoint: '', options: undefined,
    });
    const waited = task.wait({ id, execId: '' });
    await task.start({ id, execId: '' });
    await task.resizePty({ id, execId: '', width: 100, height: 40 });
    await until('stty output', () => out.text().includes('40 100'));
    // Input reaches the pty; ^D (EOF on a terminal) ends `cat`.
    const writer = openSync(stdin, constants.O_WRONLY | constants.O_NONBLOCK);
    writeSync(writer, 'typed\n\x04');
    closeSync(writer);
    await task.closeIo({ id, execId: '', stdin: true });
    assert.equal((await waited).exitStatus, 0);
    await until('echoed input', () => out.text().includes('typed'));
    await task.delete({ id, execId: '' });
    await task.shutdown({ id, now: false });
    out.close();
  });

  it('closes stdin of a pipe-fed exec on CloseIO', async () => {
    const id = 'cio1';
    const bundle = await makeBundle(id, { args: ['sleep', '1000'] });
    const task = await startShim(id, bundle);
    await task.create({
      id, bundle, rootfs: [{ type: 'bind', source: rootfsSource, target: '', options: ['rbind', 'rw'] }],
      terminal: false, stdin: '', stdout: '', stderr: '', checkpoint: '', parentCheckpoint: '', options: undefined,
    });
    await task.start({ id, execId: '' });
    const fifos = join(dir, 'fifo', id);
    mkdirSync(fifos, { recursive: true });
    const stdin = join(fifos, 'stdin');
    const stdout = join(fifos, 'stdout');
    await mkfifos(stdin, stdout);
    const out = fifoReader(stdout);
    const spec = { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: Buffer.from(JSON.stringify({ args: ['wc', '-c'], cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 } })) };
    await task.exec({ id, execId: 'w', terminal: false, stdin, stdout, stderr: '', spec });
    // The client's end of stdin, held open across the start like ctr does.
    const writer = openSync(stdin, constants.O_RDWR | constants.O_NONBLOCK);
    const waited = task.wait({ id, execId: 'w' });
    await task.start({ id, execId: 'w' });
    writeSync(writer, 'twelve bytes');
    await sleep(200);
    assert.equal(out.text(), '', 'wc saw EOF before CloseIO');
    closeSync(writer);
    await task.closeIo({ id, execId: 'w', stdin: true });
    assert.equal((await waited).exitStatus, 0);
    await until('wc output', () => out.text().trim() === '12');
    await task.delete({ id, execId: 'w' });
    await task.kill({ id, execId: '', signal: 9, all: false });
    await task.wait({ id, execId: '' });
    await task.delete({ id, execId: '' });
    await task.shutdown({ id, now: false });
    out.close();
  });
});
