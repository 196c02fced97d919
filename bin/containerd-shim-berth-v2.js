#!/usr/bin/env node
import "../dist/containerd-shim-berth-v2.js";
