export * from './types.js';
export * from './limit.js';
export * from './http.js';
export * from './auth.js';
export * from './hosts.js';
export * from './resolver.js';
export * from './pusher.js';
