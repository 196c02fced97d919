// When the memory trimmer trims (core/server/memory.ts trimDue): after a burst, once RSS stops
// growing; and for a large growth even while smaller work keeps RSS creeping up.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { trimDue, type TrimLimits } from '../../../../core/server/memory.js';

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
