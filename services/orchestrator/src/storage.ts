import type { Logger } from '@jetflow/logging';
import { createStorage, inputClaim, type Storage } from '@jetflow/storage';
import type { OrchestratorConfig } from './config.js';
import { FlowHistory } from './history.js';

/** Key prefix of claim-checked inputs: `inputs/<tenant>/<sha256>` (content-addressed: a replay stores the same object). */

export interface OrchestratorStorage {
  /** Set when JETFLOW_HISTORY=dynamodb. */
  history?: FlowHistory;
  /** Set when JETFLOW_CLAIM_CHECK_BYTES > 0. */
  claimInput?: { thresholdBytes: number; store(tenant: string, flowId: string, inputJson: Uint8Array): Promise<string>; load(ref: string): Promise<unknown> };
  close(): void;
}

/**
 * S3 and DynamoDB as the orchestrator uses them: the flow history (written by the callback-job
 * consumer) and the NATS door's claim check. Creates the table and the bucket at start, so a
 * misconfiguration fails the start, not the first flow.
 */
export async function startOrchestratorStorage(cfg: Pick<OrchestratorConfig, 'storage' | 'history' | 'claimCheckBytes'>, log: Logger): Promise<OrchestratorStorage> {
  if (cfg.history === 'off' && cfg.claimCheckBytes === 0) return { close() {} };
  const storage: Storage = createStorage(cfg.storage);
  try {
    await Promise.all([cfg.history === 'dynamodb' ? storage.flows.ensureTable() : undefined, cfg.claimCheckBytes > 0 ? storage.objects.ensureBucket() : undefined]);
  } catch (err) {
    storage.close();
    throw new Error(
      `orchestrator: storage is not usable (table ${storage.flows.table}, bucket ${storage.objects.bucket}; AWS_REGION, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_DYNAMODB, or JETFLOW_HISTORY=off): ${(err as Error).message}`,
      { cause: err },
    );
  }
  log.info({ history: cfg.history, table: storage.flows.table, claimCheckBytes: cfg.claimCheckBytes, bucket: storage.objects.bucket }, 'storage ready');
  const out: OrchestratorStorage = { close: () => storage.close() };
  if (cfg.history === 'dynamodb') out.history = new FlowHistory(storage.flows);
  if (cfg.claimCheckBytes > 0) {
    out.claimInput = inputClaim(storage.objects, cfg.claimCheckBytes);
  }
  return out;
}
