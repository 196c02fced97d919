#!/usr/bin/env -S BERTH_DEFERRED_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS} NODE_EXTRA_CA_CERTS= node
// The shebang keeps Node from parsing NODE_EXTRA_CA_CERTS at start-up; berth loads it when a
// TLS connection needs it (core/sys/extra-ca.ts).
// CommonJS (bin/package.json): starts without Node's ESM loader (see scripts/build.mjs).
require('../dist/containerd-shim-berth-v2.js');
