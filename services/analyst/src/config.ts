import { loadWorkerConfig } from '../../../libs/config/src/worker.js';

export const loadConfig = (env = process.env) => loadWorkerConfig(env, { subjects: 'jetflow.task.analyst.>', service: 'analyst', metricsPort: 9466 });
