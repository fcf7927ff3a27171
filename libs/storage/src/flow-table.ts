import { CreateTableCommand, DescribeTableCommand, type DynamoDBClient, type TableDescription } from '@aws-sdk/client-dynamodb';
import { setTimeout as sleep } from 'node:timers/promises';
import { awsErrorName, StorageError } from './errors.js';

/**
 * The flow table's layout, in one place.
 *
 *   pk                          `FLOW#<flowId>`
 *   gsi1pk / gsi1sk             `TENANT#<tenant>` / `<startedAt ISO>#<flowId>`          index `by-tenant`
 *   gsi2pk / gsi2sk             `TENANT#<tenant>#STATUS#<status>` / same as gsi1sk      index `by-tenant-status`
 *
 * A second index rather than a filter: a filter reads (and bills) every non-matching item, and "the
 * running flows of a tenant" would scan its whole history. Both indexes project only the summary
 * attributes, so large results are stored once, in the table (or S3), not three times.
 */
export const FLOW_INDEX_BY_TENANT = 'by-tenant';
export const FLOW_INDEX_BY_TENANT_STATUS = 'by-tenant-status';

export const SUMMARY_ATTRIBUTES = ['flowId', 'flow', 'tenant', 'status', 'startedAt', 'finishedAt', 'durationMs', 'deadlineAt', 'idempotencyKey', 'metadata', 'errorCount'] as const;

export const flowPk = (flowId: string): string => `FLOW#${flowId}`;
export const tenantPk = (tenant: string): string => `TENANT#${tenant}`;
export const tenantStatusPk = (tenant: string, status: string): string => `TENANT#${tenant}#STATUS#${status}`;
export const timeSk = (startedAtIso: string, flowId: string): string => `${startedAtIso}#${flowId}`;

export interface EnsureTableOptions {
  /** How long to wait for a new table to become ACTIVE. Default 120 s (real DynamoDB takes seconds). */
  timeoutMs?: number;
}

/** Creates the flow table unless it exists, checks an existing one has the indexes, waits until ACTIVE. */
export async function ensureFlowTable(client: DynamoDBClient, table: string, opts: EnsureTableOptions = {}): Promise<void> {
  let desc = await describe(client, table);
  if (!desc) {
    try {
      await client.send(new CreateTableCommand(tableSpec(table)));
    } catch (err) {
      // Another replica created it first.
      if (awsErrorName(err) !== 'ResourceInUseException') {
        throw new Error(`cannot create DynamoDB table '${table}': ${(err as Error).message}`, { cause: err });
      }
    }
    desc = await describe(client, table);
  }
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  for (;;) {
    if (!desc) throw new Error(`DynamoDB table '${table}' disappeared while being created`);
    checkShape(desc, table);
    if (isActive(desc)) return;
    if (Date.now() > deadline) {
      throw new Error(`DynamoDB table '${table}' is not ACTIVE after ${opts.timeoutMs ?? 120_000} ms (${desc.TableStatus})`);
    }
    await sleep(500);
    desc = await describe(client, table);
  }
}

function tableSpec(table: string) {
  const index = (name: string, pk: string, sk: string) => ({
    IndexName: name,
    KeySchema: [
      { AttributeName: pk, KeyType: 'HASH' as const },
      { AttributeName: sk, KeyType: 'RANGE' as const },
    ],
    Projection: { ProjectionType: 'INCLUDE' as const, NonKeyAttributes: [...SUMMARY_ATTRIBUTES] },
  });
  return {
    TableName: table,
    // On-demand: flow traffic is bursty and a provisioned table throttles bursts.
    BillingMode: 'PAY_PER_REQUEST' as const,
    AttributeDefinitions: ['pk', 'gsi1pk', 'gsi1sk', 'gsi2pk', 'gsi2sk'].map((name) => ({
      AttributeName: name,
      AttributeType: 'S' as const,
    })),
    KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' as const }],
    GlobalSecondaryIndexes: [index(FLOW_INDEX_BY_TENANT, 'gsi1pk', 'gsi1sk'), index(FLOW_INDEX_BY_TENANT_STATUS, 'gsi2pk', 'gsi2sk')],
  };
}

async function describe(client: DynamoDBClient, table: string): Promise<TableDescription | undefined> {
  try {
    const res = await client.send(new DescribeTableCommand({ TableName: table }));
    return res.Table;
  } catch (err) {
    if (awsErrorName(err) === 'ResourceNotFoundException') return undefined;
    throw err;
  }
}

function isActive(desc: TableDescription): boolean {
  return desc.TableStatus === 'ACTIVE' && (desc.GlobalSecondaryIndexes ?? []).every((g) => g.IndexStatus === 'ACTIVE');
}

function checkShape(desc: TableDescription, table: string): void {
  const hash = desc.KeySchema?.find((k) => k.KeyType === 'HASH')?.AttributeName;
  if (hash !== 'pk' || (desc.KeySchema?.length ?? 0) !== 1) {
    throw new StorageError('schema_mismatch', `DynamoDB table '${table}' exists but its key is not the single hash key 'pk'`);
  }
  const names = new Set((desc.GlobalSecondaryIndexes ?? []).map((g) => g.IndexName));
  const missing = [FLOW_INDEX_BY_TENANT, FLOW_INDEX_BY_TENANT_STATUS].filter((n) => !names.has(n));
  if (missing.length > 0) {
    throw new StorageError('schema_mismatch', `DynamoDB table '${table}' exists but lacks the index(es) ${missing.join(', ')}: recreate it or add them`);
  }
}
