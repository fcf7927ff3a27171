export * from './nats-server.js';
export * from './nats-auth.js';
export * from './callback-receiver.js';
export * from './harness.js';
export * from './load.js';
export * from './otlp-receiver.js';
export * from './suite.js';
export * from './outcomes.js';
