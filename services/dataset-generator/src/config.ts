import { loadWorkerConfig } from '../../../libs/config/src/worker.js';

export const loadConfig = (env = process.env) => loadWorkerConfig(env, { subjects: 'jetflow.task.dataset.>', service: 'dataset-generator', metricsPort: 9465 });
