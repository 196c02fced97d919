// When the memory trimmer trims (core/server/memory.ts trimDue, TrimPolicy): after a burst, once RSS stops
// growing; and for a large growth even while smaller work keeps RSS creeping up.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TrimPolicy, trimDue, type TrimLimits } from '../../../../core/server/memory.js';

const MiB = 1 << 20;
const limits: TrimLimits = { growth: 4 * MiB, busyGrowth: 32 * MiB, busyTrimEveryMs: 5000 };

test('small growth never trims', () => {
  assert.equal(trimDue(53 * MiB, 53 * MiB, 50 * MiB, 60_000, limits), false);
});

test('a grown RSS that stopped growing trims', () => {
  assert.equal(trimDue(60 * MiB, 59.5 * MiB, 50 * MiB, 0, limits), true);
});

test('a grown RSS still growing waits, unless the growth is large and the last trim old enough', () => {
  // +10 MiB, still growing: wait for the burst to end.
  assert.equal(trimDue(60 * MiB, 57 * MiB, 50 * MiB, 60_000, limits), false);
  // +70 MiB left by an ingest while a snapshot loop creeps on: trim now...
  assert.equal(trimDue(120 * MiB, 118 * MiB, 50 * MiB, 60_000, limits), true);
  // ...but not again within busyTrimEveryMs.
  assert.equal(trimDue(120 * MiB, 118 * MiB, 50 * MiB, 1000, limits), false);
});

// The trimmer's decisions over sequences of samples (TrimPolicy): what a run of the bench
// looks like to it.
const policyLimits = { ...limits, releaseEveryMs: 10_000 };

test('after a pull, memory the pull held until after its trim does not hide the next burst', () => {
  const p = new TrimPolicy(policyLimits, 40 * MiB);
  let now = 0;
  const step = (anon: number, file = 20 * MiB) => p.decide({ anon, file, now: (now += 1000) });
  // What the timer does after a trim: the file pages go too.
  const trimmed = (anon: number) => {
    p.trimmed(anon);
    p.released({ anon, file: 10 * MiB, now });
  };
  // Start-up: the first quiet moment trims.
  assert.equal(step(40 * MiB), 'trim');
  trimmed(30 * MiB);
  // A pull, seven seconds of growth: a large growth is trimmed while still busy (once the
  // last trim is 5 s old), which does not move the baseline.
  for (const mib of [70, 90, 100, 110]) assert.equal(step(mib * MiB), 'none');
  assert.equal(step(120 * MiB), 'trim');
  trimmed(85 * MiB);
  assert.equal(step(130 * MiB), 'none');
  assert.equal(step(140 * MiB), 'none');
  // Quiet: trimmed. What is left, 100 MiB, includes the gunzip worker, still alive.
  assert.equal(step(140 * MiB), 'trim');
  trimmed(100 * MiB);
  // The worker exits: the process needs less than at the trim.
  assert.equal(step(60 * MiB), 'none');
  // Ingests leave 30 MiB of buffers behind; once quiet, they are trimmed.
  assert.equal(step(85 * MiB), 'none');
  assert.equal(step(90 * MiB), 'none');
  assert.equal(step(90 * MiB), 'trim');
});

test('file pages are released when they grew, at a quiet moment, at most every releaseEveryMs', () => {
  const p = new TrimPolicy(policyLimits, 30 * MiB);
  assert.equal(p.decide({ anon: 30 * MiB, file: 40 * MiB, now: 1000 }), 'trim');
  p.trimmed(30 * MiB);
  p.released({ anon: 30 * MiB, file: 8 * MiB, now: 1000 });
  // Code faulted back in by requests: not released again before 10 s...
  assert.equal(p.decide({ anon: 30 * MiB, file: 20 * MiB, now: 5000 }), 'none');
  // ...nor while busy...
  assert.equal(p.decide({ anon: 33 * MiB, file: 20 * MiB, now: 12_000 }), 'none');
  // ...then yes.
  assert.equal(p.decide({ anon: 33 * MiB, file: 20 * MiB, now: 13_000 }), 'release');
  // Growth of anonymous memory alone is the trim's business, file pages under 4 MiB are not.
  p.released({ anon: 33 * MiB, file: 9 * MiB, now: 13_000 });
  assert.equal(p.decide({ anon: 33 * MiB, file: 11 * MiB, now: 30_000 }), 'none');
});
