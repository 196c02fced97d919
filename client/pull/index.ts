/** Image transfer helpers for the CLI and third parties: pull, unpack, import, export, push. */
export * from './lease.js';
export * from './progress.js';
export * from './unpack.js';
export * from './pull.js';
export * from './import.js';
export * from './export.js';
export * from './push.js';
