import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import { createDynamoClient, createS3Client } from './clients.js';
import { DEFAULT_BUCKET, DEFAULT_FLOWS_TABLE, type StorageConfig } from './config.js';
import { FlowRecords } from './flow-records.js';
import { ObjectStore } from './object-store.js';

/** Everything a service needs from S3 and DynamoDB, built from one config. */
export interface Storage {
  s3: S3Client;
  dynamo: DynamoDBClient;
  objects: ObjectStore;
  flows: FlowRecords;
  /** Creates the bucket and the table unless they exist (idempotent; call at start). */
  ensure(): Promise<void>;
  /** Releases the clients' sockets. */
  close(): void;
}

export function createStorage(config: StorageConfig, opts: { claimThresholdBytes?: number; inlineLimitBytes?: number } = {}): Storage {
  const s3 = createS3Client(config);
  const dynamo = createDynamoClient(config);
  const objects = new ObjectStore({
    s3,
    bucket: config.bucket ?? DEFAULT_BUCKET,
    ...(opts.claimThresholdBytes !== undefined ? { claimThresholdBytes: opts.claimThresholdBytes } : {}),
  });
  const flows = new FlowRecords({
    dynamo,
    objects,
    table: config.table ?? DEFAULT_FLOWS_TABLE,
    ...(opts.inlineLimitBytes !== undefined ? { inlineLimitBytes: opts.inlineLimitBytes } : {}),
  });
  return {
    s3,
    dynamo,
    objects,
    flows,
    async ensure() {
      await Promise.all([objects.ensureBucket(), flows.ensureTable()]);
    },
    close() {
      s3.destroy();
      dynamo.destroy();
    },
  };
}
