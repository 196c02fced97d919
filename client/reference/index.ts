export * from './digest.js';
export * from './reference.js';
export * from './spec.js';
