// Serves the tasks of tasks.mjs until SIGTERM/SIGINT, then drains. Configuration from the environment:
// NATS_URL, and the worker identity's NATS_USER + NATS_PASSWORD (or NATS_CREDS, a creds file).
import { createWorker } from '@jetflow/worker';
import { tasks } from './tasks.mjs';

const env = process.env;
if (!env.NATS_URL) throw new Error('NATS_URL is not set (e.g. nats://127.0.0.1:4222)');
const worker = await createWorker({
  servers: env.NATS_URL,
  tasks,
  ...(env.NATS_CREDS ? { credsFile: env.NATS_CREDS } : env.NATS_USER ? { user: env.NATS_USER, password: env.NATS_PASSWORD ?? '' } : {}),
  ...(env.JETFLOW_PARTITIONS ? { partitions: Number(env.JETFLOW_PARTITIONS) } : {}),
  ...(env.WORKER_CONCURRENCY ? { concurrency: Number(env.WORKER_CONCURRENCY) } : {}),
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.once(signal, () => {
    // Finishes what it holds within 10 s, hands back the rest; then exits.
    worker.stop(10_000).then(
      () => process.exit(0),
      (err) => {
        console.error(err);
        process.exit(1);
      },
    );
  });
}
