// Bad input, long suite: the property tests of the regular suite with ten times the runs.
import { envInt, seedFromEnv } from '../helpers/reliability.js';
import { inputFuzzSuite } from './scenarios/fuzz-input.js';

inputFuzzSuite({ numRuns: envInt('BERTH_FUZZ_RUNS', 2000), seed: seedFromEnv(Date.now() % 1_000_000) });
