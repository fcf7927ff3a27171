import { runWorkerService } from '../../../libs/messaging/src/index.js';
import { loadConfig } from './config.js';
import { createAnalystHandler } from './handlers/analyze.js';

const cfg = loadConfig();
await runWorkerService('analyst', cfg, async (log) => createAnalystHandler(cfg, log));
