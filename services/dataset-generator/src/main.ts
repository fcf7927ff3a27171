import { runWorkerService } from '../../../libs/messaging/src/index.js';
import { loadConfig } from './config.js';
import { createDatasetHandler } from './handlers/dataset.js';

const cfg = loadConfig();
await runWorkerService('dataset-generator', cfg, async (log) => createDatasetHandler(cfg, log));
