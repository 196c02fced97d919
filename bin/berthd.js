#!/usr/bin/env -S BERTH_DEFERRED_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS} NODE_EXTRA_CA_CERTS= node
// The shebang keeps Node from parsing NODE_EXTRA_CA_CERTS at start-up; berth loads it when a
// TLS connection needs it (core/sys/extra-ca.ts).
// CommonJS (bin/package.json): the daemon starts without Node's ESM loader (see scripts/build.mjs).
// More libuv threads than the default 4: layer extraction and snapshot copies are bursts of
// small file-system calls, and a blob write must not queue behind them. Must be set before
// the first asynchronous fs call, hence before the bundle loads.
process.env.UV_THREADPOOL_SIZE ||= '16';
require('../dist/berthd.js');
