/**
 * Task and container events as clients filter them (`event.<field>` filters see inside the
 * payloads), and the daemon's `publish` subcommand that runtime v1 shims call.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { BERTHD, BERTH, ctr, runCommand, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { busyboxRootfs } from '../helpers/fixtures.js';
import { Any } from '../../api/gen/google/protobuf/any.js';
import { TaskOOM } from '../../api/gen/events/task.js';


function subscribe(address: string, args: string[]): { output: () => string; stop: () => void } {
  const p = spawn('ctr', ['-a', address, 'events', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (b) => (out += b));
  return { output: () => out, stop: () => p.kill() };
}

async function until(cond: () => boolean, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('task events', () => {
  let d: TestDaemon;
  let rootfs: string;
  const NS = `events-${process.pid}`;

  before(async () => {
    d = await startDaemon();
    rootfs = busyboxRootfs(['true']);
  });
  after(async () => {
    await d?.dispose();
    if (rootfs) rmSync(rootfs, { recursive: true, force: true });
  });

  test('event.<field> filters select one container; berth events prints like ctr', async () => {
    const filtered = subscribe(d.address, ['event.container_id==ev2']);
    const byId = subscribe(d.address, ['event.id==ev2']);
    const all = spawn(process.execPath, [BERTH, '-a', d.address, 'events', `namespace==${NS}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let berthOut = '';
    all.stdout.on('data', (b) => (berthOut += b));
    await new Promise((r) => setTimeout(r, 500));
    for (const id of ['ev1', 'ev2']) {
      const r = await ctr(d.address, ['run', '--rm', '--rootfs', rootfs, id, '/bin/true'], { namespace: NS });
      assert.equal(r.code, 0, r.stderr);
    }
    // Both deletions of both runs: a shim's /tasks/delete can arrive after /containers/delete.
    await until(() => filtered.output().includes('/tasks/delete') && berthOut.split('/containers/delete').length === 3
      && berthOut.split('/tasks/delete').length === 3 && byId.output().includes('/containers/delete'));
    filtered.stop();
    byId.stop();
    all.kill();
    const topics = (s: string) => s.trim().split('\n').map((l) => l.split(' ')[5]);
    assert.deepEqual(topics(filtered.output()), ['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete']);
    assert.ok(!filtered.output().includes('"ev1"'));
    assert.deepEqual(topics(byId.output()), ['/containers/create', '/tasks/exit', '/containers/delete']);
    const berthLines = berthOut.trim().split('\n');
    assert.equal(berthLines.length, 12);
    assert.match(berthLines[0]!, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \+0000 UTC events-\d+ \/containers\/create \{"id":"ev1","runtime":\{"name":"io.containerd.runc.v2","options":\{"type_url":"containerd.runc.v1.Options"\}\}\}$/);
    assert.match(berthLines[3]!, /\/tasks\/exit \{"container_id":"ev1","id":"ev1","pid":\d+,"exited_at":"[^"]+Z"\}$/);
  });

  test('berthd publish: an Any on stdin becomes an event', async () => {
    const sub = subscribe(d.address, ['topic==/tasks/oom']);
    await new Promise((r) => setTimeout(r, 400));
    const any = Any.encode({ typeUrl: 'containerd.events.TaskOOM', value: Buffer.from(TaskOOM.encode({ containerId: 'oom1' }).finish()) }).finish();
    const r = await runCommand(process.execPath, [BERTHD, '--address', d.address, 'publish', '--topic', '/tasks/oom', '--namespace', NS], { input: Buffer.from(any) });
    assert.equal(r.code, 0, r.stderr);
    await until(() => sub.output().includes('oom1'));
    sub.stop();
    assert.match(sub.output(), new RegExp(` ${NS} /tasks/oom \\{"container_id":"oom1"\\}\\n$`));
    const bad = await runCommand(process.execPath, [BERTHD, '--address', d.address, 'publish', '--namespace', NS], { input: Buffer.from(any) });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /topic required to publish event/);
  });
});
