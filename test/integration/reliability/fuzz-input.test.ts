// Bad input, regular suite: property tests of the config loader, identifiers, filters, image
// references and tar extraction (the long suite in test/reliability runs them ten times longer).
import { envInt, seedFromEnv } from '../../helpers/reliability.js';
import { inputFuzzSuite } from '../../reliability/scenarios/fuzz-input.js';

inputFuzzSuite({ numRuns: envInt('BERTH_FUZZ_RUNS', 200), seed: seedFromEnv(20240601) });
