// Load, long suite: five minutes of eight `ctr run --rm` loops and two pull/rm loops, with
// berthd's descriptors, memory, handles, timers, mounts and shims compared before and after.
// BERTH_LOAD_SECONDS changes the length.
import { envInt } from '../helpers/reliability.js';
import { loadSuite } from './scenarios/load.js';

loadSuite({ durationMs: envInt('BERTH_LOAD_SECONDS', 300) * 1000, runners: 8, pullers: 2 });
