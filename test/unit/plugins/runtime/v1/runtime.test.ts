/**
 * Runtime v1 (io.containerd.runtime.v1.linux) without runc: option decoding, the shim's
 * argv, socket naming, bundle layout, and the runtime's task lifecycle, event publication,
 * dead-shim cleanup and reload — driven through a fake containerd-shim (fake-shim.ts) that
 * serves the v1 Shim API on the fd-3 listener the runtime hands it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RuncOptions, CreateOptions } from '../../../../../api/gen/runc/runctypes/runc.js';
import { TaskExit, TaskCreate, TaskDelete, TaskStart, TaskExecStarted } from '../../../../../api/gen/events/task.js';
import { EventExchange, type Envelope } from '../../../../../core/events/exchange.js';
import { packAny } from '../../../../../core/events/any.js';
import { silentLogger } from '../../../../../core/log/logger.js';
import { isAlreadyExists, isFailedPrecondition, isInvalidArgument, isNotFound, isNotImplemented } from '../../../../../core/errdefs/errdefs.js';
import { SPEC_TYPE_URL, type ContainerStore } from '../../../../../core/containers/containers.js';
import { TaskStatus, type CreateOpts } from '../../../../../core/runtime/runtime.js';
import {
  deleteBundle,
  legacyShimAddress,
  loadBundle,
  newBundle,
  readPidFile,
  remappedGid,
  shimAddress,
  writeBundleFile,
} from '../../../../../plugins/runtime/v1/bundle.js';
import {
  DEFAULT_CONFIG,
  forceDeleteCommand,
  runcOptionsOf,
  shimArgs,
  shimCgroupOf,
  type RuntimeV1Config,
} from '../../../../../plugins/runtime/v1/options.js';
import { LinuxRuntime, RUNTIME_V1_ID } from '../../../../../plugins/runtime/v1/runtime.js';
import { processGone } from '../../../../../plugins/runtime/v1/launch.js';
import { publishBinary, runtimeV1Plugin } from '../../../../../plugins/runtime/v1/plugin.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const tmp = () => mkdtempSync(join(tmpdir(), 'rt-v1-'));
const runcAny = (o: Partial<RuncOptions>) => packAny('containerd.linux.runc.RuncOptions', RuncOptions, RuncOptions.fromPartial(o));

describe('options and naming', () => {
  test('registration: type, id, containerd defaults', () => {
    assert.equal(runtimeV1Plugin.type, 'io.containerd.runtime.v1');
    assert.equal(runtimeV1Plugin.id, 'linux');
    assert.deepEqual(runtimeV1Plugin.config?.defaults, {
      shim: 'containerd-shim', runtime: 'runc', runtime_root: '', no_shim: false, shim_debug: false,
    });
  });

  test('runtime options: none, RuncOptions, anything else refused', () => {
    assert.deepEqual(runcOptionsOf(undefined), { runtime: '', runtimeRoot: '', criuPath: '', systemdCgroup: false });
    assert.deepEqual(runcOptionsOf(runcAny({ runtime: 'crun', runtimeRoot: '/r', systemdCgroup: true })),
      { runtime: 'crun', runtimeRoot: '/r', criuPath: '', systemdCgroup: true });
    assert.throws(() => runcOptionsOf({ typeUrl: 'containerd.runc.v1.Options', value: new Uint8Array() }),
      (e) => isInvalidArgument(e) && /invalid runtime options format/.test((e as Error).message));
    assert.equal(shimCgroupOf(undefined), '');
    assert.equal(shimCgroupOf(packAny('containerd.linux.runc.CreateOptions', CreateOptions, CreateOptions.fromPartial({ shimCgroup: '/shims' }))), '/shims');
    assert.throws(() => shimCgroupOf({ typeUrl: 'x.Y', value: new Uint8Array() }), isInvalidArgument);
  });

  test('shim argv: flag order and the optional flags', () => {
    const input = { namespace: 'ns', workDir: '/w', address: '/d.sock', containerdBinary: '/bin/berthd', debug: false };
    assert.deepEqual(shimArgs(DEFAULT_CONFIG, runcOptionsOf(undefined), input),
      ['-namespace', 'ns', '-workdir', '/w', '-address', '/d.sock', '-containerd-binary', '/bin/berthd']);
    const cfg: RuntimeV1Config = { ...DEFAULT_CONFIG, runtime_root: '/cfg-root' };
    assert.deepEqual(shimArgs(cfg, runcOptionsOf(undefined), { ...input, debug: true }).slice(8), ['-runtime-root', '/cfg-root', '-debug']);
    assert.deepEqual(shimArgs(cfg, runcOptionsOf(runcAny({ runtimeRoot: '/opt-root', criuPath: '/criu', systemdCgroup: true })), input).slice(8),
      ['-criu-path', '/criu', '-runtime-root', '/opt-root', '-systemd-cgroup']);
  });

  test('runc delete after a dead shim: binary and per-namespace root', () => {
    assert.deepEqual(forceDeleteCommand(DEFAULT_CONFIG, runcOptionsOf(undefined), 'ns', 'c1'),
      { file: 'runc', args: ['--root', '/run/containerd/runc/ns', '--log-format', 'json', 'delete', '--force', 'c1'] });
    const cmd = forceDeleteCommand({ ...DEFAULT_CONFIG, runtime_root: '/x', shim_debug: true }, runcOptionsOf(runcAny({ runtime: 'crun' })), 'ns', 'c1');
    assert.deepEqual(cmd, { file: 'crun', args: ['--root', '/x/ns', '--debug', '--log-format', 'json', 'delete', '--force', 'c1'] });
  });

  test('socket address: sha256 of "<address>/<ns>/<id>" under /run/containerd/s', () => {
    const want = createHash('sha256').update('/tmp/ctd/ctd.sock/default/c3').digest('hex');
    assert.equal(shimAddress('/tmp/ctd/ctd.sock', 'default', 'c3'), `unix:///run/containerd/s/${want}`);
    assert.ok(shimAddress('/tmp/ctd/ctd.sock', 'default', 'c3').length <= 106);
    assert.equal(legacyShimAddress('default', 'c3'), '/containerd-shim/default/c3/shim.sock');
  });
});

describe('bundles', () => {
  test('layout and modes; removal takes bundle and work dir', async () => {
    const dir = tmp();
    try {
      const root = join(dir, 'root');
      const state = join(dir, 'state');
      const spec = Buffer.from('{"ociVersion":"1.0.2-dev"}');
      const b = await newBundle(root, state, 'ns', 'c1', spec);
      assert.deepEqual(b, loadBundle(root, state, 'ns', 'c1'));
      assert.equal(b.path, join(state, 'ns', 'c1'));
      assert.equal(b.workDir, join(root, 'ns', 'c1'));
      assert.equal(statSync(b.path).mode & 0o777, 0o700);
      assert.equal(statSync(join(state, 'ns')).mode & 0o777, 0o711);
      assert.equal(statSync(b.workDir).mode & 0o777, 0o711);
      assert.equal(statSync(join(b.path, 'rootfs')).mode & 0o777, 0o711);
      assert.deepEqual(readFileSync(join(b.path, 'config.json')), spec);
      assert.ok(!existsSync(join(b.path, 'work')), 'no work symlink in v1 bundles');
      await assert.rejects(newBundle(root, state, 'ns', 'c1', spec), isAlreadyExists);
      await writeBundleFile(b.path, 'shim.pid', '1234');
      assert.equal(await readPidFile(join(b.path, 'shim.pid')), 1234);
      assert.equal(await readPidFile(join(b.path, 'missing.pid')), 0);
      assert.ok(!existsSync(join(b.path, '.shim.pid')));
      writeFileSync(join(b.workDir, 'leftover'), 'x');
      await deleteBundle(b);
      assert.ok(!existsSync(b.path));
      assert.ok(!existsSync(b.workDir));
      assert.ok(!existsSync(join(state, 'ns', '.c1')));
      await deleteBundle(b); // idempotent
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('user namespaces: the remapped root gid', () => {
    assert.equal(remappedGid(Buffer.from('{}')), 0);
    assert.equal(remappedGid(Buffer.from('{"linux":{"gidMappings":[{"containerID":0,"hostID":100000,"size":65536}]}}')), 100000);
    assert.throws(() => remappedGid(Buffer.from('{')), isInvalidArgument);
  });

  test('publish binary: the daemon executable, or a wrapper when it cannot be run directly', async () => {
    const dir = tmp();
    try {
      const exe = join(dir, 'berthd.js');
      writeFileSync(exe, '#!/usr/bin/env node\n', { mode: 0o755 });
      assert.equal(await publishBinary(exe, join(dir, 'state')), exe);
      chmodSync(exe, 0o644);
      const wrapper = await publishBinary(exe, join(dir, 'state'));
      assert.equal(wrapper, join(dir, 'state', 'berthd-publish'));
      assert.equal(statSync(wrapper).mode & 0o777, 0o755);
      assert.match(readFileSync(wrapper, 'utf8'), new RegExp(`^#!/bin/sh\\nexec '${process.execPath}' '${exe}' "\\$@"\\n$`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ------------------------------------------------------------------------ with a fake shim

interface Harness {
  dir: string;
  root: string;
  state: string;
  address: string;
  events: EventExchange;
  seen: Envelope[];
  config: RuntimeV1Config;
  make(): LinuxRuntime;
  stop(): void;
}

function harness(overrides: Partial<RuntimeV1Config> = {}): Harness {
  const dir = tmp();
  const shim = join(dir, 'fake-containerd-shim');
  const tsx = import.meta.resolve('tsx');
  writeFileSync(shim, `#!/bin/sh\nexec '${process.execPath}' --import '${tsx}' '${join(HERE, 'fake-shim.ts')}' "$@"\n`, { mode: 0o755 });
  const events = new EventExchange();
  const seen: Envelope[] = [];
  const ac = new AbortController();
  void (async () => {
    for await (const env of events.subscribe([], ac.signal)) seen.push(env);
  })();
  const containers = {
    get: async () => ({ runtime: { name: RUNTIME_V1_ID } }),
  } as unknown as ContainerStore;
  // runc is not involved: the cleanup's `runc delete --force` runs /bin/true.
  const config: RuntimeV1Config = { ...DEFAULT_CONFIG, shim, runtime: '/bin/true', ...overrides };
  const h: Harness = {
    dir,
    root: join(dir, 'root'),
    state: join(dir, 'state'),
    address: join(dir, 'daemon.sock'),
    events,
    seen,
    config,
    make: () => new LinuxRuntime({
      root: h.root,
      state: h.state,
      address: h.address,
      containerdBinary: '/usr/local/bin/fake-berthd',
      config,
      loadTimeoutMs: 5000,
      containers,
      events,
      log: silentLogger,
    }),
    stop: () => {
      ac.abort();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return h;
}

const specAny = (args: string[] = ['sleep']) => ({ typeUrl: SPEC_TYPE_URL, value: Buffer.from(JSON.stringify({ ociVersion: '1.0.2-dev', process: { args } })) });

function createOpts(extra: Partial<CreateOpts> = {}): CreateOpts {
  return {
    spec: specAny(),
    rootfs: [],
    io: { stdin: '/fifo/in', stdout: '/fifo/out', stderr: '', terminal: false },
    checkpoint: '',
    runtime: RUNTIME_V1_ID,
    ...extra,
  };
}

async function until<T>(what: string, fn: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const topics = (h: Harness, ns: string, id: string) => h.seen.filter((e) => e.namespace === ns && decodeId(e) === id).map((e) => e.topic);

function decodeId(e: Envelope): string {
  const codecs: Record<string, { decode(b: Uint8Array): { containerId: string } }> = {
    'containerd.events.TaskCreate': TaskCreate, 'containerd.events.TaskStart': TaskStart, 'containerd.events.TaskExit': TaskExit,
    'containerd.events.TaskDelete': TaskDelete, 'containerd.events.TaskExecStarted': TaskExecStarted,
  };
  const c = e.event && codecs[e.event.typeUrl];
  if (c) return c.decode(e.event!.value).containerId;
  // paused / resumed: field 1 is the container id as well.
  return e.event ? Buffer.from(e.event.value.subarray(2)).toString() : '';
}

function calls(bundlePath: string): { method: string; request: Record<string, unknown> }[] {
  return readFileSync(join(bundlePath, 'calls.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

describe('runtime with a fake containerd-shim', () => {
  let h: Harness;
  before(() => {
    h = harness();
  });
  after(() => h.stop());

  test('create → start → exec → pause/resume → kill → delete, with the daemon-side events', async () => {
    const rt = h.make();
    await rt.init();
    const ropts = runcAny({ runtime: 'my-runc', runtimeRoot: '/rr', systemdCgroup: true });
    const task = await rt.create('ns1', 't1', createOpts({
      runtimeOptions: ropts,
      rootfs: [{ type: 'bind', source: '/src', options: ['rbind', 'ro'] }],
    }));
    const bundle = join(h.state, 'ns1', 't1');
    const work = join(h.root, 'ns1', 't1');
    const shimInfo = JSON.parse(readFileSync(join(bundle, 'fake-shim.json'), 'utf8'));
    assert.deepEqual(shimInfo.argv, [
      '-namespace', 'ns1', '-workdir', work, '-address', h.address, '-containerd-binary', '/usr/local/bin/fake-berthd',
      '-runtime-root', '/rr', '-systemd-cgroup',
    ]);
    assert.equal(shimInfo.cwd, bundle);
    assert.equal(shimInfo.gomaxprocs, '2');
    const address = readFileSync(join(bundle, 'address'), 'utf8');
    assert.equal(address, shimAddress(h.address, 'ns1', 't1'));
    const sock = statSync(address.slice('unix://'.length));
    assert.ok(sock.isSocket());
    assert.equal(sock.mode & 0o777, 0o600);
    assert.equal(Number(readFileSync(join(bundle, 'shim.pid'), 'utf8')), shimInfo.pid);
    assert.ok(statSync(join(work, 'shim.stdout.log')).isFIFO());
    assert.ok(statSync(join(work, 'shim.stderr.log')).isFIFO());
    const [create] = calls(bundle);
    assert.equal(create!.method, 'create');
    assert.deepEqual(
      { ...create!.request, pid: undefined },
      {
        id: 't1', bundle, runtime: 'my-runc', rootfs: [{ type: 'bind', source: '/src', target: '', options: ['rbind', 'ro'] }],
        terminal: false, stdin: '/fifo/in', stdout: '/fifo/out', stderr: '', checkpoint: '', parentCheckpoint: '', pid: undefined,
      },
    );

    const createPid = await task.pid();
    assert.ok(createPid > 0);
    assert.equal(rt.get('ns1', 't1'), task);
    assert.deepEqual(rt.tasks('ns1'), [task]);
    assert.deepEqual(rt.tasks('other'), []);
    const ev = h.seen.find((e) => e.topic === '/tasks/create')!;
    const created = TaskCreate.decode(ev.event!.value);
    assert.equal(ev.namespace, 'ns1');
    assert.equal(created.bundle, bundle);
    assert.equal(created.pid, createPid);
    assert.equal(created.io?.stdin, '/fifo/in');
    assert.equal(created.rootfs[0]?.source, '/src');
    await assert.rejects(rt.create('ns1', 't1', createOpts()), isAlreadyExists);

    assert.equal((await task.state()).status, TaskStatus.Created);
    assert.equal(await task.start(), createPid);
    assert.equal((await task.state()).status, TaskStatus.Running);

    const p = await task.exec('e1', { io: { stdin: '', stdout: '/e/out', stderr: '', terminal: true }, spec: { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: Buffer.from('{}') } });
    await assert.rejects(task.exec('bad/id', { io: { stdin: '', stdout: '', stderr: '', terminal: false } }), isInvalidArgument);
    const execPid = await p.start();
    assert.equal((await task.process('e1')).id, 'e1');
    await assert.rejects(task.process('nope'), isNotFound);
    await p.resizePty(80, 24);
    await p.closeIO();
    const waited = p.wait();
    await p.kill(9, true);
    assert.equal((await waited).status, 137);
    assert.equal((await p.delete()).status, 137);

    await task.pause();
    assert.equal((await task.state()).status, TaskStatus.Paused);
    await task.resume();
    assert.equal((await task.pids()).length, 1);
    await task.update({ typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources', value: Buffer.from('{}') }, { a: 'b' });
    await assert.rejects(task.checkpoint('/x', undefined), isNotImplemented);
    await assert.rejects(task.stats(), isNotFound);

    const requests = calls(bundle).map((c) => [c.method, c.request.id ?? '']);
    assert.deepEqual(requests, [
      ['create', 't1'], ['start', 't1'], ['exec', 'e1'], ['start', 'e1'], ['resizePty', 'e1'], ['closeIo', 'e1'], ['kill', 'e1'],
      ['deleteProcess', 'e1'], ['pause', ''], ['resume', ''], ['listPids', 't1'], ['update', ''],
    ]);
    assert.equal(calls(bundle).find((c) => c.method === 'kill')!.request.all, false, 'exec kill never signals all');

    // The init process exits; the shim's /tasks/exit (simulated here) arrives a little later
    // than the delete request, and /tasks/delete still follows it.
    const initWait = task.wait();
    await task.kill(9, false);
    const exit = await initWait;
    assert.equal(exit.status, 137);
    setTimeout(() => h.events.publish('ns1', '/tasks/exit', packAny('containerd.events.TaskExit', TaskExit, {
      containerId: 't1', id: 't1', pid: createPid, exitStatus: 137, exitedAt: exit.timestamp,
    })), 150);
    await assert.rejects(rt.delete('ns1', 'nope'), isNotFound);
    const deleted = await rt.delete('ns1', 't1');
    assert.equal(deleted.status, 137);
    assert.equal(deleted.pid, createPid);
    await until('/tasks/delete', () => (topics(h, 'ns1', 't1').includes('/tasks/delete') ? true : undefined));
    assert.deepEqual(topics(h, 'ns1', 't1'), ['/tasks/create', '/tasks/start', '/tasks/exec-started', '/tasks/paused', '/tasks/resumed', '/tasks/exit', '/tasks/delete']);
    const started = h.seen.find((e) => e.topic === '/tasks/exec-started')!;
    assert.deepEqual(TaskExecStarted.decode(started.event!.value), { containerId: 't1', execId: 'e1', pid: execPid });
    assert.equal(TaskDelete.decode(h.seen.find((e) => e.topic === '/tasks/delete')!.event!.value).exitStatus, 137);

    assert.ok(processGone(shimInfo.pid), 'shim killed');
    assert.ok(!existsSync(bundle) && !existsSync(work), 'bundle and work dir removed');
    assert.ok(!existsSync(address.slice('unix://'.length)), 'socket removed');
    assert.throws(() => rt.get('ns1', 't1'), isNotFound);
    await rt.close();
  });

  test('a delete without any exit event waits a bounded time, then goes on', async () => {
    const rt = h.make();
    await rt.init();
    const task = await rt.create('ns2', 'quiet', createOpts());
    await task.start();
    await task.kill(9, false);
    await task.wait();
    const t0 = Date.now();
    const exit = await rt.delete('ns2', 'quiet');
    const took = Date.now() - t0;
    assert.equal(exit.status, 137);
    assert.ok(took >= 1000 && took < 4000, `delete took ${took} ms`);
    await until('/tasks/delete', () => (topics(h, 'ns2', 'quiet').includes('/tasks/delete') ? true : undefined));
    assert.deepEqual(topics(h, 'ns2', 'quiet'), ['/tasks/create', '/tasks/start', '/tasks/delete']);
    await rt.close();
  });

  test('failures: create error cleans up; no_shim and foreign options are refused', async () => {
    const rt = h.make();
    await rt.init();
    await assert.rejects(rt.create('ns3', 'bad', createOpts({ spec: specAny(['fail-create']) })), /fake: runc create failed/);
    assert.ok(!existsSync(join(h.state, 'ns3', 'bad')), 'bundle removed');
    assert.ok(!existsSync(join(h.root, 'ns3', 'bad')), 'work dir removed');
    const left = spawnSync('pgrep', ['-f', '--', `-workdir ${join(h.root, 'ns3', 'bad')} `]).stdout.toString().trim();
    assert.equal(left, '', 'shim killed');
    assert.deepEqual(rt.tasks(undefined), []);
    assert.ok(!topics(h, 'ns3', 'bad').length);

    await assert.rejects(rt.create('ns3', 'opts', createOpts({ runtimeOptions: { typeUrl: 'containerd.runc.v1.Options', value: new Uint8Array() } })), isInvalidArgument);
    await assert.rejects(rt.create('ns3', 'bad/id', createOpts()), (e) => isInvalidArgument(e) && /invalid task id/.test((e as Error).message));
    assert.ok(!existsSync(join(h.state, 'ns3', 'opts')));

    for (const [shim, why] of [['/bin/false', /ttrpc|closed|connect|ECONNREFUSED|unavailable|OOM score/i], [join(h.dir, 'no-such-shim'), /failed to start shim: .*ENOENT/]] as const) {
      const broken = harness({ shim });
      try {
        const r3 = broken.make();
        await r3.init();
        const t0 = Date.now();
        await assert.rejects(r3.create('ns', 'x', createOpts()), why);
        assert.ok(Date.now() - t0 < 5000, 'a shim that never serves fails the create quickly');
        assert.ok(!existsSync(join(broken.state, 'ns', 'x')) && !existsSync(join(broken.root, 'ns', 'x')));
        assert.ok(!existsSync(shimAddress(broken.address, 'ns', 'x').slice('unix://'.length)), 'socket removed');
        await r3.close();
      } finally {
        broken.stop();
      }
    }

    const noShim = harness({ no_shim: true });
    try {
      const r2 = noShim.make();
      await r2.init();
      await assert.rejects(r2.create('ns', 'x', createOpts()), (e) => isFailedPrecondition(e) && /no_shim is not supported by berth/.test((e as Error).message));
      await r2.close();
    } finally {
      noShim.stop();
    }
    await rt.close();
  });

  test('a shim that dies: runc delete, exit 137 and delete events, bundle removed', async () => {
    const rt = h.make();
    await rt.init();
    const task = await rt.create('ns4', 'dies', createOpts());
    const pid = Number(await task.start());
    const bundle = join(h.state, 'ns4', 'dies');
    const shimPid = Number(readFileSync(join(bundle, 'shim.pid'), 'utf8'));
    process.kill(shimPid, 'SIGKILL');
    await until('dead shim cleanup', () => (topics(h, 'ns4', 'dies').includes('/tasks/delete') ? true : undefined));
    assert.deepEqual(topics(h, 'ns4', 'dies'), ['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete']);
    const exitEv = TaskExit.decode(h.seen.find((e) => e.namespace === 'ns4' && e.topic === '/tasks/exit')!.event!.value);
    assert.equal(exitEv.exitStatus, 137);
    assert.equal(exitEv.pid, pid, 'pid from init.pid');
    assert.throws(() => rt.get('ns4', 'dies'), isNotFound);
    await until('bundle removal', () => (existsSync(bundle) ? undefined : true));
    await rt.close();
  });

  test('reload: a live shim is reconnected with its pid, a dead one is cleaned up', async () => {
    const rt1 = h.make();
    await rt1.init();
    const task = await rt1.create('ns5', 'lives', createOpts());
    const pid = Number(await task.start());
    await rt1.close();
    // A bundle whose shim is gone (its address answers nothing).
    const ghost = join(h.state, 'ns5', 'ghost');
    mkdirSync(join(ghost, 'rootfs'), { recursive: true });
    writeFileSync(join(ghost, 'address'), 'unix:///run/containerd/s/berth-test-no-such-shim');
    writeFileSync(join(ghost, 'init.pid'), '99999');
    mkdirSync(join(h.root, 'ns5', 'ghost'), { recursive: true });

    const rt2 = h.make();
    await rt2.init();
    const reloaded = rt2.get('ns5', 'lives');
    assert.equal(await reloaded.pid(), pid);
    assert.equal((await reloaded.state()).status, TaskStatus.Running);
    assert.throws(() => rt2.get('ns5', 'ghost'), isNotFound);
    assert.ok(!existsSync(ghost) && !existsSync(join(h.root, 'ns5', 'ghost')), 'dead bundle removed');
    assert.deepEqual(topics(h, 'ns5', 'ghost'), ['/tasks/exit', '/tasks/delete']);
    assert.equal(TaskExit.decode(h.seen.find((e) => e.namespace === 'ns5' && e.topic === '/tasks/exit')!.event!.value).pid, 99999);

    const waited = reloaded.wait();
    await reloaded.kill(9, false);
    assert.equal((await waited).status, 137);
    h.events.publish('ns5', '/tasks/exit', packAny('containerd.events.TaskExit', TaskExit, { containerId: 'lives', id: 'lives', pid, exitStatus: 137, exitedAt: new Date() }));
    const exit = await rt2.delete('ns5', 'lives');
    assert.equal(exit.status, 137);
    assert.equal(exit.pid, pid);
    assert.ok(!existsSync(join(h.state, 'ns5', 'lives')));
    await rt2.close();
  });
});
