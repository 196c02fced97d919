// Bad input, long suite: every gRPC method with ten times the malformed and hostile messages.
import { envInt, seedFromEnv } from '../helpers/reliability.js';
import { grpcFuzzSuite } from './scenarios/fuzz-grpc.js';

grpcFuzzSuite({ perMethod: envInt('BERTH_FUZZ_PER_METHOD', 30), seed: seedFromEnv(Date.now() % 1_000_000) });
