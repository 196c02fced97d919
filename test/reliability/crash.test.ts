// Crash consistency, long suite: twelve kills at random points of each operation (the regular
// suite in test/integration/reliability kills three times). BERTH_SEED replays a failure.
import { envInt, seedFromEnv } from '../helpers/reliability.js';
import { crashSuite } from './scenarios/crash.js';

crashSuite({ iterations: envInt('BERTH_CRASH_ITERATIONS', 12), seed: seedFromEnv(Date.now() % 1_000_000) });
