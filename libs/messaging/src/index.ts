export * from './topology.js';
export * from './publisher.js';
export * from './connect.js';
export * from './loop.js';
export * from './dlq.js';
export * from './worker.js';
export * from './events.js';
export * from './worker-main.js';
