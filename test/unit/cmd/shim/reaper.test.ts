/**
 * The reaper against real processes. This test process becomes a child subreaper (only this
 * file's process: node --test runs each file separately), so orphans are re-parented to it
 * exactly as container processes are to the shim.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { prctlSetChildSubreaper } from '../../../../core/sys/syscalls.js';
import { Reaper, UNKNOWN_EXIT_STATUS } from '../../../../cmd/containerd-shim-berth-v2/reaper.js';
import type { ChildExit } from '../../../../cmd/containerd-shim-berth-v2/libc.js';

prctlSetChildSubreaper();

/**
 * Signal handlers and the reaper's timer do not keep Node alive (in the shim the ttrpc server
 * does), so each test holds a timer while it waits for SIGCHLD.
 */
function alive(fn: () => Promise<void>): () => Promise<void> {
  return async () => {
    const timer = setInterval(() => {}, 1000);
    try {
      await fn();
    } finally {
      clearInterval(timer);
    }
  };
}

/** Starts `script` in a shell that exits at once, leaving the background job as our orphan. */
async function orphan(script: string): Promise<number> {
  const { stdout } = await promisify(execFile)('sh', ['-c', `(${script}) >/dev/null 2>&1 & echo $!`]);
  return Number(stdout.trim());
}

/** Waits until `pid` is a zombie (it has exited and waits to be reaped: by us, its subreaper). */
async function zombie(pid: number): Promise<void> {
  const { readFileSync } = await import('node:fs');
  for (let i = 0; i < 500; i++) {
    // Field 3 of /proc/<pid>/stat, after the parenthesised command name.
    if (/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'latin1'))) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${pid} did not exit`);
}

function exitOf(reaper: Reaper, pid: number): Promise<ChildExit> {
  return new Promise((resolve) => reaper.watch(pid, resolve));
}

test('re-parented orphans are reaped on SIGCHLD with their exit code or 128+signal', alive(async () => {
  const reaper = new Reaper();
  try {
    // Already dead when it is watched. It outlives the shell that started it, so that the
    // shell cannot reap it first: its status is ours.
    const quick = await orphan('sleep 0.05; exit 4');
    await zombie(quick);
    const slow = await orphan('sleep 0.2; exit 9');
    const killed = await orphan('sleep 30');
    const exits = [exitOf(reaper, quick), exitOf(reaper, slow), exitOf(reaper, killed)];
    process.kill(killed, 'SIGKILL');
    assert.deepEqual(await Promise.all(exits), [
      { pid: quick, status: 4 },
      { pid: slow, status: 9 },
      { pid: killed, status: 137 },
    ]);
    assert.equal(reaper.size, 0);
  } finally {
    reaper.close();
  }
}));

test("libuv's own children keep their exit statuses", alive(async () => {
  const reaper = new Reaper();
  try {
    const watched = await orphan('sleep 0.1');
    const watchedExit = exitOf(reaper, watched);
    // A process spawned by Node while the reaper works: its status must still reach Node.
    const child = spawn('sh', ['-c', 'sleep 0.2; exit 5']);
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 5);
    assert.equal((await watchedExit).status, 0);
  } finally {
    reaper.close();
  }
}));

test('a pid that is not our child is reported once it is gone, with an unknown status', alive(async () => {
  const reaper = new Reaper({ listenForSignals: false });
  try {
    // Our own child via libuv: not ours to reap, so waitid says ECHILD only after libuv reaped it.
    const child = spawn('sleep', ['0.1']);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const pid = child.pid!;
    await exited;
    const seen = exitOf(reaper, pid);
    reaper.check();
    assert.deepEqual(await seen, { pid, status: UNKNOWN_EXIT_STATUS });
  } finally {
    reaper.close();
  }
}));
