/**
 * Runtime v2 across a daemon crash: berthd is killed with SIGKILL while tasks run; after the
 * restart it reconnects to the live shims (same pids, exec/kill/wait/delete work), cleans up
 * after a shim that died while it was down, and removes stale work dirs.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { berth, ctr, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { busyboxRootfs, waitFor } from '../helpers/fixtures.js';
import { killAndDeleteTask } from '../helpers/tasks.js';
import { shimOfTask } from '../helpers/reliability.js';




describe('runtime v2 restart', () => {
  let d: TestDaemon;
  let rootfs: string;
  const NS = `restart-${process.pid}`;
  const C = (...args: string[]) => ctr(d.address, args, { namespace: NS });
  const B = (...args: string[]) => berth(d.address, args, { namespace: NS });

  before(async () => {
    d = await startDaemon();
    rootfs = busyboxRootfs(['sh', 'echo', 'true', 'sleep', 'cat']);
  });
  after(async () => {
    for (const id of ['r1', 'r2', 'r3']) {
      await C('tasks', 'kill', '-s', 'SIGKILL', id).catch(() => undefined);
      await C('tasks', 'rm', '-f', id).catch(() => undefined);
      await C('containers', 'rm', id).catch(() => undefined);
    }
    await d?.dispose();
    if (rootfs) rmSync(rootfs, { recursive: true, force: true });
  });

  test('tasks survive kill -9 of berthd and are reloaded', async () => {
    assert.equal((await C('run', '-d', '--rootfs', rootfs, 'r1', '/bin/sleep', '300')).code, 0);
    assert.equal((await C('run', '-d', '--rootfs', rootfs, 'r2', '/bin/sleep', '300')).code, 0);
    let r = await B('run', '-d', '--rootfs', rootfs, 'r3', '/bin/sleep', '300');
    assert.equal(r.code, 0, r.stderr);
    const before = (await C('tasks', 'ls')).stdout;
    const pidOf = (out: string, id: string) => out.match(new RegExp(`^${id}\\s+(\\d+)\\s+RUNNING$`, 'm'))?.[1];
    const pid1 = pidOf(before, 'r1');
    const pid3 = pidOf(before, 'r3');
    assert.ok(pid1 && pid3, before);
    const runtimeRoot = join(d.root, 'io.containerd.runtime.v2.task', NS);
    const runtimeState = join(d.state, 'io.containerd.runtime.v2.task', NS);

    await d.kill9();
    // While the daemon is down: r2's shim dies, and a stray work dir appears.
    const p2 = shimOfTask(d.state, NS, 'r2') ?? 0;
    assert.ok(p2 > 0);
    process.kill(p2, 'SIGKILL');
    mkdirSync(join(runtimeRoot, 'stale-workdir'));
    await d.restart();

    r = await C('tasks', 'ls');
    assert.equal(pidOf(r.stdout, 'r1'), pid1, r.stdout);
    assert.equal(pidOf(r.stdout, 'r3'), pid3, r.stdout);
    assert.doesNotMatch(r.stdout, /^r2 /m, 'the task of the dead shim is gone');
    assert.ok(!existsSync(join(runtimeState, 'r2')), 'dead shim bundle removed');
    assert.ok(!existsSync(join(runtimeRoot, 'r2')), 'dead shim work dir removed');
    assert.ok(!existsSync(join(runtimeRoot, 'stale-workdir')), 'stale work dir removed');
    assert.ok(existsSync(join(runtimeRoot, 'r1')));
    assert.match(d.log(), /reconnected to shim/);

    r = await C('tasks', 'exec', '--exec-id', 'after', 'r1', '/bin/echo', 'after-restart');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'after-restart\n');
    r = await B('tasks', 'exec', '--exec-id', 'after3', 'r3', '/bin/sh', '-c', 'echo berth-exec; exit 4');
    assert.equal(r.code, 4);
    assert.equal(r.stdout, 'berth-exec\n');

    await killAndDeleteTask(d.connect(NS), 'r1', pid1);
    await waitFor('r1 bundle removal', async () => (existsSync(join(runtimeState, 'r1')) ? undefined : true));

    // r2's container record is still there; its task is not.
    r = await C('tasks', 'rm', 'r2');
    assert.notEqual(r.code, 0);
    assert.equal((await C('containers', 'rm', 'r1', 'r2')).code, 0);

    r = await B('tasks', 'kill', '-s', 'SIGKILL', 'r3');
    assert.equal(r.code, 0, r.stderr);
    await waitFor('r3 STOPPED', async () => (/^r3\s+\d+\s+STOPPED$/m.test((await B('tasks', 'ls')).stdout) ? true : undefined));
    assert.equal((await B('tasks', 'rm', 'r3')).code, 0);
    assert.equal((await B('containers', 'rm', 'r3')).code, 0);
  });

  test('a clean restart (SIGTERM) leaves shims running too', async () => {
    assert.equal((await C('run', '-d', '--rootfs', rootfs, 'r1', '/bin/sleep', '300')).code, 0);
    const pid = (await C('tasks', 'ls')).stdout.match(/^r1\s+(\d+)\s+RUNNING$/m)?.[1];
    await d.stop();
    await d.restart();
    assert.match((await C('tasks', 'ls')).stdout, new RegExp(`^r1\\s+${pid}\\s+RUNNING$`, 'm'));
    assert.equal((await C('tasks', 'kill', '-s', 'SIGKILL', 'r1')).code, 0);
    await waitFor('STOPPED', async () => (/^r1\s+\d+\s+STOPPED$/m.test((await C('tasks', 'ls')).stdout) ? true : undefined));
    assert.equal((await C('tasks', 'rm', 'r1')).code, 0);
    assert.equal((await C('containers', 'rm', 'r1')).code, 0);
  });
});
