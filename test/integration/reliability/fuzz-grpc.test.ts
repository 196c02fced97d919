// Bad input, regular suite: every gRPC method with malformed, hostile and oversized messages
// (the long suite in test/reliability sends ten times as many of each kind).
import { envInt, seedFromEnv } from '../../helpers/reliability.js';
import { grpcFuzzSuite } from '../../reliability/scenarios/fuzz-grpc.js';

grpcFuzzSuite({ perMethod: envInt('BERTH_FUZZ_PER_METHOD', 3), seed: seedFromEnv(7001) });
