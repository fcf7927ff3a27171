export * from './nats-server.js';
export * from './callback-receiver.js';
export * from './harness.js';
export * from './load.js';
export * from './otlp-receiver.js';
export * from './suite.js';
export * from './outcomes.js';
