import type { NatsConnection } from 'nats';
import type { FlowRegistry } from '@jetflow/flows';
import type { Logger } from '@jetflow/logging';
import { createStorage, inputClaim, type FlowRecords, type Storage } from '@jetflow/storage';
import type { IngestConfig } from '../config.js';
import type { FlowLister } from '../handlers/flow-lister.js';
import type { InputClaimCheck } from './gateway.js';
import { HistoryFlowLister } from './history-flow-lister.js';
import { KvFlowLister } from './kv-flow-lister.js';

/** Key prefix of claim-checked inputs: `inputs/<tenant>/<sha256>` (content-addressed: a retried submission stores the same object). */

export interface IngestStorage {
  /** Set when JETFLOW_CLAIM_CHECK_BYTES > 0. */
  claim?: InputClaimCheck;
  /** Set when JETFLOW_HISTORY=dynamodb. */
  history?: FlowRecords;
  /** GET /v1/flows: the history for final statuses, the KV bucket otherwise (see HistoryFlowLister). */
  lister: FlowLister;
  close(): void;
}

/** S3 for the claim check, DynamoDB for the history; bucket and table ensured at start. */
export async function startIngestStorage(
  cfg: Pick<IngestConfig, 'storage' | 'claimCheckBytes' | 'history'>,
  deps: { nc: NatsConnection; registry: FlowRegistry; log: Logger },
): Promise<IngestStorage> {
  const kvLister = new KvFlowLister(deps.nc);
  if (cfg.claimCheckBytes === 0 && cfg.history === 'off') return { lister: kvLister, close() {} };
  const storage: Storage = createStorage(cfg.storage);
  try {
    await Promise.all([cfg.claimCheckBytes > 0 ? storage.objects.ensureBucket() : undefined, cfg.history === 'dynamodb' ? storage.flows.ensureTable() : undefined]);
  } catch (err) {
    storage.close();
    throw new Error(
      `ingest: storage is not usable (bucket ${storage.objects.bucket}, table ${storage.flows.table}; AWS_REGION, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_DYNAMODB, JETFLOW_CLAIM_CHECK_BYTES=0, JETFLOW_HISTORY=off): ${(err as Error).message}`,
      { cause: err },
    );
  }
  deps.log.info({ claimCheckBytes: cfg.claimCheckBytes, bucket: storage.objects.bucket, history: cfg.history, table: storage.flows.table }, 'storage ready');
  const out: IngestStorage = { lister: kvLister, close: () => storage.close() };
  if (cfg.claimCheckBytes > 0) {
    out.claim = inputClaim(storage.objects, cfg.claimCheckBytes);
  }
  if (cfg.history === 'dynamodb') {
    out.history = storage.flows;
    out.lister = new HistoryFlowLister(kvLister, storage.flows, deps.registry);
  }
  return out;
}
