// Crash consistency, regular suite: three kills at random points of each operation (the long
// suite in test/reliability kills each twelve times). BERTH_SEED replays a failure.
import { envInt, seedFromEnv } from '../../helpers/reliability.js';
import { crashSuite } from '../../reliability/scenarios/crash.js';

crashSuite({ iterations: envInt('BERTH_CRASH_ITERATIONS', 3), seed: seedFromEnv(424242) });
