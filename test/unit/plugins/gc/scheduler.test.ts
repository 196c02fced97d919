/**
 * The gc scheduler with a fake collector: startup run, deletion and mutation thresholds,
 * explicit requests (scheduleAndWait), the pause-threshold spacing, failures, stop; and the
 * plugin's config validation and containerd-style exports.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Scheduler, type SchedulerOptions } from '../../../../plugins/gc/scheduler/scheduler.js';
import { gcSchedulerPlugin, goDuration, goFloat } from '../../../../plugins/gc/scheduler/plugin.js';
import type { GcStats } from '../../../../core/metadata/metadata.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function fake(gcMs = 1) {
  const runs: number[] = [];
  let fail = false;
  const collect = async (): Promise<GcStats> => {
    runs.push(Date.now());
    await sleep(gcMs);
    if (fail) throw new Error('boom');
    return { removed: 0, ms: gcMs };
  };
  return { runs, collect, setFail: (f: boolean) => (fail = f) };
}

const opts = (o: Partial<SchedulerOptions> = {}): SchedulerOptions => ({
  pauseThreshold: 0.02,
  deletionThreshold: 0,
  mutationThreshold: 100,
  scheduleDelay: 0,
  startupDelay: 0,
  ...o,
});

describe('gc scheduler', () => {
  test('collects once after the startup delay', async () => {
    const f = fake();
    const s = new Scheduler(f.collect, opts({ startupDelay: 20 }));
    s.start();
    await sleep(5);
    assert.equal(f.runs.length, 0);
    await sleep(60);
    assert.equal(f.runs.length, 1);
    s.stop();
  });

  test('no startup delay: nothing runs until asked', async () => {
    const f = fake();
    const s = new Scheduler(f.collect, opts());
    s.start();
    await sleep(30);
    assert.equal(f.runs.length, 0);
    s.notify('mutation');
    await sleep(30);
    assert.equal(f.runs.length, 0, 'a single mutation is below the threshold');
    s.notify('deletion');
    await sleep(30);
    assert.equal(f.runs.length, 1, 'a deletion schedules a collection');
    s.stop();
  });

  test('scheduleAndWait triggers a collection and resolves with its stats', async () => {
    const f = fake(2);
    const s = new Scheduler(f.collect, opts({ startupDelay: 5 }));
    s.start();
    await sleep(30);
    assert.equal(f.runs.length, 1);
    const stats = await s.scheduleAndWait();
    assert.equal(stats.ms, 2);
    assert.equal(f.runs.length, 2);
    s.stop();
  });

  test('a waiter arriving during a collection waits for the next one', async () => {
    const f = fake(30);
    const s = new Scheduler(f.collect, opts());
    s.start();
    const first = s.scheduleAndWait();
    await sleep(10);
    const second = s.scheduleAndWait();
    await first;
    assert.equal(f.runs.length, 1);
    await second;
    assert.equal(f.runs.length, 2);
    s.stop();
  });

  test('the pause threshold spaces deletion-triggered collections', async () => {
    const f = fake(10);
    // 10 ms per run at a 0.2 threshold: at least 40 ms between runs.
    const s = new Scheduler(f.collect, opts({ pauseThreshold: 0.2 }));
    s.start();
    await s.scheduleAndWait();
    assert.ok(Math.abs(s.state.intervalMs - 40) < 1e-6, `interval ${s.state.intervalMs}`);
    const end = Date.now();
    s.notify('deletion');
    await sleep(5);
    assert.equal(f.runs.length, 1, 'deletion waits for the interval');
    await sleep(80);
    assert.equal(f.runs.length, 2);
    assert.ok(f.runs[1]! - end >= 35, `second run ${f.runs[1]! - end} ms after the first ended`);
    s.stop();
  });

  test('deletion_threshold > 0 collects once that many deletions happened', async () => {
    const f = fake();
    const s = new Scheduler(f.collect, opts({ deletionThreshold: 3, pauseThreshold: 0.5 }));
    s.start();
    s.notify('deletion');
    s.notify('deletion');
    await sleep(20);
    assert.equal(f.runs.length, 0);
    s.notify('deletion');
    await sleep(20);
    assert.equal(f.runs.length, 1);
    s.stop();
  });

  test('mutation_threshold schedules a collection after that many mutations', async () => {
    const f = fake();
    const s = new Scheduler(f.collect, opts({ mutationThreshold: 5 }));
    s.start();
    for (let i = 0; i < 4; i++) s.notify('mutation');
    await sleep(20);
    assert.equal(f.runs.length, 0);
    s.notify('mutation');
    await sleep(20);
    assert.equal(f.runs.length, 1);
    s.stop();
  });

  test('a failed collection rejects its waiters and is retried later', async () => {
    const f = fake();
    f.setFail(true);
    const s = new Scheduler(f.collect, opts());
    s.start();
    await assert.rejects(s.scheduleAndWait(), /boom/);
    f.setFail(false);
    await s.scheduleAndWait();
    s.stop();
  });

  test('stop rejects waiters and ignores further notices', async () => {
    const f = fake(50);
    const s = new Scheduler(f.collect, opts());
    s.start();
    const ac = new AbortController();
    const w = s.scheduleAndWait(ac.signal);
    await sleep(5);
    const late = s.scheduleAndWait();
    s.stop();
    await assert.rejects(late, /stopped/);
    await w.catch(() => undefined);
    await assert.rejects(s.scheduleAndWait(), /stopped/);
  });

  test('config validation and exports', async () => {
    const validate = gcSchedulerPlugin.config!.validate!;
    const d = gcSchedulerPlugin.config!.defaults;
    assert.deepEqual(d, { pause_threshold: 0.02, deletion_threshold: 0, mutation_threshold: 100, schedule_delay: '0s', startup_delay: '100ms' });
    validate(d);
    assert.throws(() => validate({ ...d, schedule_delay: 'soon' }), /schedule_delay/);
    assert.throws(() => validate({ ...d, deletion_threshold: 1.5 }), /deletion_threshold/);
    assert.throws(() => validate({ ...d, pause_threshold: 'x' as unknown as number }), /pause_threshold/);
    assert.equal(goFloat(0.02), '0.02');
    assert.equal(goFloat(0.5), '0.5');
    assert.equal(goFloat(0), '0');
    assert.equal(goFloat(0.00001), '1e-05');
    assert.equal(goDuration(0), '0s');
    assert.equal(goDuration(100), '100ms');
    assert.equal(goDuration(1500), '1.5s');
    assert.equal(goDuration(90_000), '1m30s');
    assert.equal(goDuration(3_600_000), '1h0m0s');
    assert.equal(goDuration(0.5), '500µs');
  });
});
