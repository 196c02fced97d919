#!/usr/bin/env node
// CommonJS (bin/package.json): starts without Node's ESM loader (see scripts/build.mjs).
require('../dist/containerd-shim-berth-v2.js');
