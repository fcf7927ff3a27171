import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NatsConnection } from 'nats';
import { knownSubjects, subjectMatches, taskSubjects } from '@jetflow/flows';
import type { WorkerConfig } from './config.js';
import { createLogger, reportError, type Logger } from '@jetflow/logging';
import { connectNats, provisionTopology, startTaskWorker, type TaskHandler } from '@jetflow/messaging';
import { startWorkerObservability } from './observability.js';

/**
 * The composition of a task-worker process: connect, provision, serve the task subjects that match
 * this service's pattern, drain on SIGTERM and exit 0. Each worker service's main.ts is this plus its
 * own handler.
 */
export async function runWorkerService(service: string, cfg: WorkerConfig, makeHandler: (log: Logger, nc: NatsConnection) => Promise<{ handler: TaskHandler; close?: () => Promise<void> }>) {
  const log = createLogger(service, cfg.logLevel);
  process.on('unhandledRejection', (err) => reportError(log, err, { where: 'unhandledRejection' }));
  const obs = await startWorkerObservability(service, cfg, log);
  const all = taskSubjects(cfg.registry.defs);
  // Only subjects this service has a plugin for: a definition's custom subject is an outside worker's.
  const own = new Set(knownSubjects(cfg.testPlugins));
  const subjects = all.filter((s) => own.has(s) && cfg.subjects.some((p) => subjectMatches(p, s)));
  if (!subjects.length) throw new Error(`JETFLOW_TASK_SUBJECTS=${cfg.subjects.join(',')} matches no task subject this service serves; known: ${all.filter((s) => own.has(s)).join(', ')}`);
  const nc = await connectNats({ servers: cfg.natsServers, name: cfg.instanceId, log, auth: cfg.natsAuth });
  await provisionTopology(nc, { partitions: cfg.partitions, taskSubjects: all, replicas: cfg.replicas, log });
  // After connecting: a handler may use the connection's KV buckets (the analyst's dataset cache).
  const { handler, close } = await makeHandler(log, nc);
  const worker = await startTaskWorker({
    nc,
    subjects,
    concurrency: cfg.concurrency,
    partitions: cfg.partitions,
    handler,
    log,
    workerId: cfg.instanceId,
    announce: { name: service, service, version: packageVersion(), intervalMs: cfg.announceIntervalMs },
    onOutcome: (task, outcome, ms, err) => obs.onOutcome(task, outcome, ms, err),
    onLimitDelay: (subject, limit) => obs.onLimitDelay(subject, limit),
  });
  obs.watchConsumers(nc, subjects);
  log.info({ subjects, concurrency: cfg.concurrency, threads: cfg.threads, mode: cfg.mode }, `${service} started`);
  let stopping = false;
  const shutdown = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ sig, inFlight: worker.inFlight }, 'stopping: no new fetches, finishing in-flight work');
    await worker.stop(cfg.graceMs);
    await close?.();
    await nc.drain().catch(() => undefined);
    await obs.close();
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

/** The version in the nearest package.json above this file that is not a lib's own (the repository's, or the image's). */
function packageVersion(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (!pkg.name?.startsWith('@jetflow/')) return pkg.version ?? '0.0.0';
    } catch {
      // no package.json here: look further up
    }
    const up = dirname(dir);
    if (up === dir) return '0.0.0';
    dir = up;
  }
}
