import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import { createDynamoClient, createS3Client } from './clients.js';
import { FlowRecords } from './flow-records.js';
import { startLocalAws, type LocalAws } from './local-aws.js';
import { ObjectStore } from './object-store.js';

export interface FlowRecordsFixture {
  aws: LocalAws;
  s3: S3Client;
  dynamo: DynamoDBClient;
  objects: ObjectStore;
  flows: FlowRecords;
  stop(): Promise<void>;
}

/** For tests: local S3 and DynamoDB, the real AWS SDK clients, a bucket and a FlowRecords table on them. */
export async function startFlowRecords(o: { bucket: string; table: string; inlineLimitBytes?: number }): Promise<FlowRecordsFixture> {
  const aws = await startLocalAws();
  const config = { s3Endpoint: aws.s3Endpoint, dynamoEndpoint: aws.dynamoEndpoint, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } };
  const s3 = createS3Client(config);
  const dynamo = createDynamoClient(config);
  const objects = new ObjectStore({ s3, bucket: o.bucket });
  await objects.ensureBucket();
  const flows = new FlowRecords({ dynamo, objects, table: o.table, ...(o.inlineLimitBytes !== undefined ? { inlineLimitBytes: o.inlineLimitBytes } : {}) });
  await flows.ensureTable();
  return {
    aws,
    s3,
    dynamo,
    objects,
    flows,
    async stop() {
      s3.destroy();
      dynamo.destroy();
      await aws.stop();
    },
  };
}
