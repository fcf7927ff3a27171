/** @jetflow/config: reading a service's settings from the environment (env), and the settings several services share. */
export * from './env.js';
export * from './nats.js';
export * from './storage.js';
export * from './tenant-limits.js';
