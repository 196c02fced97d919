/**
 * Spare shims (plugins/runtime/v2/spares.ts) with the real runc shim and berth's own: a task's
 * deletion starts the next task's shim; that task takes it (its bundle is the spare's
 * directory, renamed); an idle spare, a dead one, a daemon's stop and a killed daemon's
 * leftover leave no process and no directory behind. Which tasks may take a spare is
 * test/unit/plugins/runtime/v2/spares.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ctr, startDaemon, type TestDaemon } from '../../../helpers/daemon.js';
import { busyboxRootfs, waitFor } from '../../../helpers/fixtures.js';
import { shimOfTask, shimPids, spareShimPids } from '../../../helpers/reliability.js';

// runc keeps its state per namespace under /run/containerd/runc: a namespace of this run's own.
const NS = `spares-${process.pid}`;

describe('spare shims', { timeout: 120_000 }, () => {
  let d: TestDaemon;
  let rootfs: string;
  const C = (...args: string[]) => ctr(d.address, args, { namespace: NS });
  const spareDirs = () => {
    const dir = join(d.state, 'io.containerd.runtime.v2.task', NS);
    return existsSync(dir) ? readdirSync(dir).filter((n) => n.startsWith('.spare-')) : [];
  };
  const oneSpare = () => waitFor('a spare shim', () => {
    const pids = spareShimPids(d.address);
    return pids.length === 1 && spareDirs().length === 1 ? pids[0] : undefined;
  }).catch((err: Error) => {
    throw new Error(`${err.message}: spare shims [${spareShimPids(d.address).join(', ')}], directories [${spareDirs().join(', ')}]`);
  });

  before(async () => {
    d = await startDaemon({ extraConfig: '[plugins."io.containerd.runtime.v2.task"]\n  spare_shim_idle = "3s"' });
    rootfs = busyboxRootfs(['sh', 'true', 'sleep']);
  });
  after(async () => {
    // Tasks of a failed test go through runc, so that no runc state outlives them.
    for (const id of (await C('tasks', 'ls', '-q')).stdout.split('\n').filter(Boolean)) {
      await C('tasks', 'kill', '-s', 'SIGKILL', id);
      await waitFor('the task to stop', async () => ((await C('tasks', 'ls')).stdout.includes('RUNNING') ? undefined : true)).catch(() => undefined);
      await C('tasks', 'rm', '-f', id);
    }
    for (const pid of shimPids(d.address)) process.kill(pid, 'SIGKILL');
    await d?.dispose();
    if (rootfs) rmSync(rootfs, { recursive: true, force: true });
  });

  for (const runtime of ['io.containerd.runc.v2', 'io.containerd.berth.v2']) {
    test(`${runtime}: a deleted task leaves a spare, the next task takes it, an idle one exits`, async () => {
      const tag = runtime.split('.')[2]!;
      const [first, second] = [`${tag}-first`, `${tag}-second`];
      let r = await C('run', '--rm', '--runtime', runtime, '--rootfs', rootfs, first, '/bin/true');
      assert.equal(r.code, 0, r.stderr);
      const spare = await oneSpare();
      const [spareDir] = spareDirs();
      r = await C('run', '-d', '--runtime', runtime, '--rootfs', rootfs, second, '/bin/sh', '-c', 'sleep 30');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(shimOfTask(d.state, NS, second), spare, 'the task runs in the spare shim');
      assert.ok(!spareDirs().includes(spareDir!), 'the spare directory became the bundle');
      // Its start began the next spare (for a client starting tasks one after another).
      const next = await oneSpare();
      assert.notEqual(next, spare);
      const bundle = join(d.state, 'io.containerd.runtime.v2.task', NS, second);
      for (const f of ['address', 'config.json', 'rootfs', 'work', 'shim-binary-path']) assert.ok(existsSync(join(bundle, f)), f);
      r = await C('tasks', 'kill', '-s', 'SIGKILL', second);
      assert.equal(r.code, 0, r.stderr);
      await waitFor('the task to stop', async () => ((await C('tasks', 'ls')).stdout.includes('STOPPED') ? true : undefined));
      r = await C('tasks', 'rm', second);
      assert.equal(r.code, 0, r.stderr);
      assert.equal((await C('containers', 'rm', second)).code, 0);
      await waitFor('the task\'s shim to exit', () => (existsSync(`/proc/${spare}`) ? undefined : true));
      // Its deletion started the next spare, which nobody takes: it exits after the idle time.
      await oneSpare();
      await waitFor('the idle spare to exit', () => (shimPids(d.address).length === 0 && spareDirs().length === 0 ? true : undefined), 15_000);
    });
  }

  test('a spare that dies is replaced by an ordinary start; the task runs', async () => {
    assert.equal((await C('run', '--rm', '--rootfs', rootfs, 'a', '/bin/true')).code, 0);
    const spare = await oneSpare();
    process.kill(spare, 'SIGKILL');
    await waitFor('the dead spare\'s directory to go', () => (spareDirs().length === 0 ? true : undefined));
    const r = await C('run', '--rm', '--rootfs', rootfs, 'b', '/bin/sh', '-c', 'exit 3');
    assert.equal(r.code, 3, r.stderr);
  });

  test('stopping berthd retires its spare; a killed berthd\'s spare goes at the next boot', async () => {
    assert.equal((await C('run', '--rm', '--rootfs', rootfs, 'd1', '/bin/true')).code, 0);
    let spare = await oneSpare();
    await d.stop();
    await waitFor('the spare to exit with the daemon', () => (existsSync(`/proc/${spare}`) ? undefined : true));
    assert.deepEqual(spareDirs(), []);
    await d.restart();
    assert.equal((await C('run', '--rm', '--rootfs', rootfs, 'd2', '/bin/true')).code, 0);
    spare = await oneSpare();
    await d.kill9();
    assert.ok(existsSync(`/proc/${spare}`), 'a spare outlives a killed daemon');
    await d.restart();
    await waitFor('the leftover spare to exit', () => (existsSync(`/proc/${spare}`) ? undefined : true));
    assert.deepEqual(spareDirs(), []);
    assert.equal((await C('run', '--rm', '--rootfs', rootfs, 'd3', '/bin/true')).code, 0);
  });

  test('spare_shims = false: no spare, each task\'s shim named by it; a bad spare_shim_idle is refused', async () => {
    const off = await startDaemon({ extraConfig: '[plugins."io.containerd.runtime.v2.task"]\n  spare_shims = false' });
    try {
      const O = (...args: string[]) => ctr(off.address, args, { namespace: NS });
      assert.equal((await O('run', '--rm', '--rootfs', rootfs, 'off1', '/bin/true')).code, 0);
      const r = await O('run', '-d', '--rootfs', rootfs, 'off2', '/bin/sh', '-c', 'sleep 30');
      assert.equal(r.code, 0, r.stderr);
      const shim = shimOfTask(off.state, NS, 'off2');
      assert.ok(shim && readFileSync(`/proc/${shim}/cmdline`, 'utf8').split('\0').includes('off2'), 'the shim is named by its task');
      assert.deepEqual(spareShimPids(off.address), []);
      await O('tasks', 'kill', '-s', 'SIGKILL', 'off2');
      await waitFor('the task to stop', async () => ((await O('tasks', 'ls')).stdout.includes('RUNNING') ? undefined : true));
      assert.equal((await O('tasks', 'rm', 'off2')).code, 0);
    } finally {
      await off.dispose();
    }
    await assert.rejects(
      startDaemon({ extraConfig: '[plugins."io.containerd.runtime.v2.task"]\n  spare_shim_idle = "0s"' }).then((x) => x.dispose()),
      /spare_shim_idle/,
    );
  });

  test('a leftover spare that never answered (its `start` cut short by the kill): its processes are killed at boot, nobody else', async () => {
    await d.stop();
    const dir = join(d.state, 'io.containerd.runtime.v2.task', NS, '.spare-0123456789ab');
    mkdirSync(dir, { recursive: true });
    const idle = [process.execPath, '-e', 'setTimeout(() => {}, 300_000)'];
    // Stands in for a shim `start` that had not written its address yet.
    const shim = spawn(idle[0]!, [...idle.slice(1), '--', '-id', 'berth-spare-0123456789ab', 'start'], { cwd: dir, stdio: 'ignore' });
    const stranger = spawn(idle[0]!, idle.slice(1), { cwd: dir, stdio: 'ignore' });
    try {
      await d.restart();
      await waitFor('the leftover spare\'s process to be killed', () => (shim.exitCode !== null || shim.signalCode !== null ? true : undefined));
      assert.equal(shim.signalCode, 'SIGKILL');
      assert.equal(existsSync(dir), false, 'its directory is gone');
      assert.equal(stranger.exitCode ?? stranger.signalCode, null, 'a process without the spare\'s id is left alone');
    } finally {
      shim.kill('SIGKILL');
      stranger.kill('SIGKILL');
    }
  });
});
