/**
 * @jetflow/worker-service: what a built-in worker service is made of besides its handlers: its settings
 * (loadWorkerConfig), its process (runWorkerService: connect, provision, serve its subjects, stop on a
 * signal) and its metrics, traces and dead-letter logging. Above messaging, flows, config and telemetry,
 * which none of them import.
 */
export * from './config.js';
export * from './main.js';
export * from './observability.js';
