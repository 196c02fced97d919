/**
 * ShimService with a fake runc (fake-runc.ts) and a stand-in events sink: the task state
 * machine, exit handling and above all the event order when a process exits while `runc start`
 * is still running. This test process is made a child subreaper, as the shim is.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { constants, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { TaskExit } from '../../../../api/gen/events/task.js';
import { Options } from '../../../../api/gen/runc/options/oci.js';
import type { CreateTaskRequest } from '../../../../api/gen/runtime/v2/task/shim.js';
import { EventsService, type Envelope } from '../../../../api/gen/services/ttrpc/events/v1/events.js';
import { Status } from '../../../../api/gen/types/task/task.js';
import { TtrpcServer, type HandlerContext } from '../../../../api/ttrpc/index.js';
import { prctlSetChildSubreaper } from '../../../../core/sys/syscalls.js';
import { Publisher } from '../../../../cmd/containerd-shim-berth-v2/events.js';
import { createLogger } from '../../../../cmd/containerd-shim-berth-v2/log.js';
import { Reaper } from '../../../../cmd/containerd-shim-berth-v2/reaper.js';
import { ShimService } from '../../../../cmd/containerd-shim-berth-v2/service.js';
import { fakeRunc } from './fake-runc.js';
import { tempDir } from '../../../helpers/tmp.js';

prctlSetChildSubreaper();
const fake = fakeRunc();
const dir = tempDir('shim-service-');
const log = createLogger({ fd: -1 });
const received: Envelope[] = [];
const sink = new TtrpcServer();
let publisher: Publisher;
let reaper: Reaper;
let service: ShimService;
let shutdowns = 0;
// Keeps the loop alive while tests wait for SIGCHLD (the shim has its server for that).
const keepAlive = setInterval(() => {}, 1000);

before(async () => {
  sink.register(EventsService, {
    forward: async (req) => {
      received.push(req.envelope!);
      return {};
    },
  });
  const address = `unix://${join(dir, 'events.sock')}`;
  await sink.listen(address);
  publisher = new Publisher({ address, namespace: 'ns', log });
  reaper = new Reaper();
  service = new ShimService({ namespace: 'ns', publisher, reaper, log, onShutdown: () => shutdowns++ });
});

after(async () => {
  clearInterval(keepAlive);
  reaper.close();
  publisher.close();
  await sink.close({ graceMs: 10 });
});

const ctx = (): HandlerContext => ({ metadata: {}, signal: new AbortController().signal });

function bundleFor(id: string, pidNamespace = true): string {
  const bundle = join(dir, id);
  mkdirSync(bundle);
  writeFileSync(join(bundle, 'config.json'), JSON.stringify({ linux: { namespaces: pidNamespace ? [{ type: 'pid' }] : [{ type: 'mount' }] } }));
  return bundle;
}

function createRequest(id: string, extra: Partial<CreateTaskRequest> = {}): CreateTaskRequest {
  const options = { typeUrl: 'containerd.runc.v1.Options', value: Buffer.from(Options.encode(Options.fromPartial({ binaryName: fake.path })).finish()) };
  return {
    id, bundle: bundleFor(id), rootfs: [], terminal: false, stdin: '', stdout: '', stderr: '',
    checkpoint: '', parentCheckpoint: '', options, ...extra,
  };
}

async function eventsFor(id: string, last: string): Promise<string[]> {
  const deadline = Date.now() + 5000;
  const topics = () => received.filter((e) => e.event!.value.subarray(2, 2 + e.event!.value[1]!).toString() === id).map((e) => e.topic);
  while (!topics().includes(last) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  await publisher.flush(1000);
  return topics();
}

test('an exit seen while `runc start` is still running is published after /tasks/start', async () => {
  fake.setCommand('fast', 'exit 3');
  fake.setStartDelay('fast', 0.3);
  const { pid } = await service.create(createRequest('fast'));
  const waited = service.wait({ id: 'fast', execId: '' }, ctx());
  await service.start({ id: 'fast', execId: '' });
  assert.equal((await waited).exitStatus, 3);
  assert.deepEqual(await eventsFor('fast', '/tasks/exit'), ['/tasks/create', '/tasks/start', '/tasks/exit']);
  const exit = TaskExit.decode(received.find((e) => e.topic === '/tasks/exit')!.event!.value);
  assert.deepEqual([exit.containerId, exit.id, exit.pid, exit.exitStatus], ['fast', 'fast', pid, 3]);
  const deleted = await service.delete({ id: 'fast', execId: '' });
  assert.deepEqual([deleted.pid, deleted.exitStatus], [pid, 3]);
  assert.deepEqual(await eventsFor('fast', '/tasks/delete'), ['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete']);
});

test('state machine: created, running, paused, stopped; errors as containerd words them', async () => {
  fake.setCommand('sm', 'sleep 30');
  await service.create(createRequest('sm'));
  assert.equal((await service.state({ id: 'sm', execId: '' })).status, Status.CREATED);
  await assert.rejects(service.pause({ id: 'sm' }), /cannot pause task in created state/);
  await service.start({ id: 'sm', execId: '' });
  await assert.rejects(service.start({ id: 'sm', execId: '' }), /cannot start a running process/);
  await assert.rejects(service.delete({ id: 'sm', execId: '' }), /cannot delete a running process/);
  await service.pause({ id: 'sm' });
  assert.equal((await service.state({ id: 'sm', execId: '' })).status, Status.PAUSED);
  await assert.rejects(service.exec({ id: 'sm', execId: 'x', terminal: false, stdin: '', stdout: '', stderr: '', spec: undefined }), /cannot exec in a paused state/);
  await service.resume({ id: 'sm' });
  const waited = service.wait({ id: 'sm', execId: '' }, ctx());
  await service.kill({ id: 'sm', execId: '', signal: 9, all: false });
  assert.equal((await waited).exitStatus, 137);
  const state = await service.state({ id: 'sm', execId: '' });
  assert.equal(state.status, Status.STOPPED);
  assert.ok(state.exitedAt!.getTime() > 0);
  await assert.rejects(service.kill({ id: 'sm', execId: '', signal: 9, all: false }), (e: unknown) => (e as { code?: number }).code === 5);
  await service.delete({ id: 'sm', execId: '' });
  assert.deepEqual(await eventsFor('sm', '/tasks/delete'), ['/tasks/create', '/tasks/start', '/tasks/paused', '/tasks/resumed', '/tasks/exit', '/tasks/delete']);
});

test('execs: added, started, exit in order; pid-file and process.json handed to runc', async () => {
  fake.setCommand('ex', 'sleep 30');
  await service.create(createRequest('ex'));
  await service.start({ id: 'ex', execId: '' });
  fake.setExecCommand('ex', 'exit 6');
  const spec = { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: Buffer.from(JSON.stringify({ args: ['true'], cwd: '/' })) };
  await service.exec({ id: 'ex', execId: 'e1', terminal: false, stdin: '', stdout: '', stderr: '', spec });
  await assert.rejects(service.exec({ id: 'ex', execId: 'e1', terminal: false, stdin: '', stdout: '', stderr: '', spec }), /id e1: already exists/);
  const waited = service.wait({ id: 'ex', execId: 'e1' }, ctx());
  const { pid } = await service.start({ id: 'ex', execId: 'e1' });
  assert.equal((await waited).exitStatus, 6);
  const execCall = fake.calls().find((argv) => argv[6] === 'exec')!;
  assert.deepEqual(execCall.slice(6, 10), ['exec', '--detach', '--pid-file', join(dir, 'ex', 'e1.pid')]);
  assert.equal(execCall.at(-1), 'ex');
  const processJson = JSON.parse(execFileSync('cat', [join(fake.dir, 'process-ex')], { encoding: 'utf8' })) as { args: string[]; terminal: boolean };
  assert.deepEqual(processJson, { args: ['true'], cwd: '/', terminal: false });
  assert.deepEqual((await service.delete({ id: 'ex', execId: 'e1' })).pid, pid);
  await assert.rejects(service.state({ id: 'ex', execId: 'e1' }), /process does not exist e1: not found/);

  await service.kill({ id: 'ex', execId: '', signal: 9, all: false });
  await service.wait({ id: 'ex', execId: '' }, ctx());
  await service.delete({ id: 'ex', execId: '' });
  assert.deepEqual(await eventsFor('ex', '/tasks/delete'), [
    '/tasks/create', '/tasks/start', '/tasks/exec-added', '/tasks/exec-started', '/tasks/exit', '/tasks/exit', '/tasks/delete',
  ]);
});

test("without a private pid namespace the init's exit kills the rest (runc kill --all)", async () => {
  fake.setCommand('host', 'sleep 0.1');
  const request = createRequest('host');
  writeFileSync(join(request.bundle, 'config.json'), JSON.stringify({ linux: { namespaces: [{ type: 'mount' }] } }));
  await service.create(request);
  await service.start({ id: 'host', execId: '' });
  await service.wait({ id: 'host', execId: '' }, ctx());
  assert.ok(fake.calls().some((argv) => argv.slice(6).join(' ') === 'kill --all host 9'));
  await service.delete({ id: 'host', execId: '' });
});

test('stdio through the fake runtime: output copied before delete returns', async () => {
  fake.setCommand('out', 'echo to-stdout; echo to-stderr >&2');
  const fifoDir = join(dir, 'fifos');
  mkdirSync(fifoDir);
  const stdout = join(fifoDir, 'out');
  const stderr = join(fifoDir, 'err');
  execFileSync('mkfifo', [stdout, stderr]);
  const texts = [stdout, stderr].map((p) => {
    const socket = new Socket({ fd: openSync(p, constants.O_RDWR | constants.O_NONBLOCK), readable: true, writable: false });
    const box = { text: '', socket };
    socket.on('data', (d: Buffer) => (box.text += d.toString()));
    return box;
  });
  await service.create(createRequest('out', { stdout, stderr }));
  await service.start({ id: 'out', execId: '' });
  await service.wait({ id: 'out', execId: '' }, ctx());
  await service.delete({ id: 'out', execId: '' });
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(texts.map((t) => t.text), ['to-stdout\n', 'to-stderr\n']);
  for (const t of texts) t.socket.destroy();
});

test('create failures report the runtime error; unknown ids are NOT_FOUND; Shutdown waits for the last container', async () => {
  await assert.rejects(service.create(createRequest('fail')), /OCI runtime create failed: fake runc: cannot create container/);
  await assert.rejects(service.state({ id: 'nope', execId: '' }), /container not created: not found/);
  await assert.rejects(service.checkpoint({ id: 'nope', path: '/x', options: undefined }), /not found/);
  fake.setCommand('last', 'sleep 30');
  await service.create(createRequest('last'));
  await service.checkpoint({ id: 'last', path: '/x', options: undefined }).then(
    () => assert.fail('checkpoint succeeded'),
    (err: unknown) => assert.equal((err as { code?: number }).code, 12),
  );
  await service.shutdown({ id: 'last', now: false });
  await new Promise((r) => setImmediate(r));
  assert.equal(shutdowns, 0);
  await service.kill({ id: 'last', execId: '', signal: 9, all: false });
  await service.wait({ id: 'last', execId: '' }, ctx());
  await service.delete({ id: 'last', execId: '' });
  await service.shutdown({ id: 'last', now: false });
  await new Promise((r) => setImmediate(r));
  assert.equal(shutdowns, 1);
});

test('Wait is cancelled with the request', async () => {
  fake.setCommand('w', 'sleep 30');
  await service.create(createRequest('w'));
  const abort = new AbortController();
  const waited = service.wait({ id: 'w', execId: '' }, { metadata: {}, signal: abort.signal });
  abort.abort();
  await assert.rejects(waited, /context canceled/);
  await service.kill({ id: 'w', execId: '', signal: 9, all: false });
  await service.wait({ id: 'w', execId: '' }, ctx());
  await service.delete({ id: 'w', execId: '' });
});
