import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetCommand, PutCommand, QueryCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { createDocumentClient } from './clients.js';
import { DEFAULT_FLOWS_TABLE } from './config.js';
import { decodeCursor, encodeCursor } from './cursor.js';
import { awsErrorName, isStorageError, StorageError } from './errors.js';
import { ensureFlowTable, flowPk, FLOW_INDEX_BY_TENANT, FLOW_INDEX_BY_TENANT_STATUS, SUMMARY_ATTRIBUTES, tenantPk, tenantStatusPk, timeSk, type EnsureTableOptions } from './flow-table.js';
import type { ObjectStore } from './object-store.js';

export type FlowStatus = 'accepted' | 'running' | 'succeeded' | 'partial' | 'failed' | 'cancelled';
export type FinalFlowStatus = 'succeeded' | 'partial' | 'failed' | 'cancelled';
export const FINAL_FLOW_STATUSES: readonly FinalFlowStatus[] = ['succeeded', 'partial', 'failed', 'cancelled'];
const ALL_STATUSES: readonly FlowStatus[] = ['accepted', 'running', ...FINAL_FLOW_STATUSES];

/** One failed task, as the callback reports it. */
export interface FlowTaskError {
  task: string;
  code: string;
  message: string;
}

export interface FlowStart {
  flowId: string;
  /** Flow definition name, e.g. `insights`. */
  flow: string;
  tenant: string;
  startedAt: string | Date;
  /** Default `running`. */
  status?: 'accepted' | 'running';
  deadlineAt?: string | Date;
  idempotencyKey?: string;
  callbackUrl?: string;
  metadata?: Record<string, string>;
  /** Flow definition version. */
  version?: string;
  traceId?: string;
}

export interface FlowFinish {
  status: FinalFlowStatus;
  finishedAt: string | Date;
  durationMs: number;
  /** One entry per analyst; stored in S3 instead of the item when its JSON is large. */
  results?: unknown;
  errors?: FlowTaskError[];
  /** Dataset references. */
  datasets?: unknown;
}

/** What a listing returns (the attributes the indexes project). */
export interface FlowSummary {
  flowId: string;
  flow: string;
  tenant: string;
  status: FlowStatus;
  startedAt: string;
  finishedAt?: string;
  durationMs?: number;
  deadlineAt?: string;
  idempotencyKey?: string;
  metadata?: Record<string, string>;
  errorCount?: number;
}

export interface FlowRecord extends FlowSummary {
  callbackUrl?: string;
  version?: string;
  traceId?: string;
  results?: unknown;
  errors?: FlowTaskError[];
  datasets?: unknown;
  /** Set when the field was claim-checked to S3 (with `resolve: false` the field itself is then absent). */
  resultsRef?: string;
  errorsRef?: string;
  datasetsRef?: string;
}

export interface FlowListQuery {
  tenant: string;
  status?: FlowStatus;
  /** 1..1000, default 20. */
  limit?: number;
  /** From the previous page. */
  cursor?: string;
}

export interface FlowPage {
  items: FlowSummary[];
  /** Present when there may be more items. */
  cursor?: string;
}

export interface FlowRecordsOptions {
  dynamo: DynamoDBClient;
  /** Where large results, errors and datasets lists go. */
  objects: ObjectStore;
  /** Default `jetflow-flows`. */
  table?: string;
  /**
   * Each of results, errors and datasets is kept in the item up to this JSON size, and in S3 above it.
   * Default 96 KiB: three of them plus the rest stay under DynamoDB's 400 KB item limit.
   */
  inlineLimitBytes?: number;
}

const DEFAULT_INLINE_LIMIT = 96 * 1024;
const BLOB_FIELDS = ['results', 'errors', 'datasets'] as const;
type BlobField = (typeof BLOB_FIELDS)[number];

/**
 * Flow history in DynamoDB: queryable after the KV saga state has expired. Writes are conditional so
 * that replays and races (a redelivered message, two orchestrators) are harmless no-ops.
 */
export class FlowRecords {
  readonly table: string;
  private readonly dynamo: DynamoDBClient;
  private readonly doc: DynamoDBDocumentClient;
  private readonly objects: ObjectStore;
  private readonly inlineLimit: number;

  constructor(opts: FlowRecordsOptions) {
    this.dynamo = opts.dynamo;
    this.doc = createDocumentClient(opts.dynamo);
    this.objects = opts.objects;
    this.table = opts.table ?? DEFAULT_FLOWS_TABLE;
    this.inlineLimit = opts.inlineLimitBytes ?? DEFAULT_INLINE_LIMIT;
    if (!Number.isInteger(this.inlineLimit) || this.inlineLimit < 0) {
      throw new StorageError('invalid_argument', `inlineLimitBytes must be a non-negative integer, got ${this.inlineLimit}`);
    }
  }

  /** Creates the table and its indexes unless they exist. Safe to call from every replica at start. */
  async ensureTable(opts?: EnsureTableOptions): Promise<void> {
    await ensureFlowTable(this.dynamo, this.table, opts);
  }

  /** Records a flow's start. Returns false (and changes nothing) when the flow is already recorded. */
  async recordStarted(start: FlowStart): Promise<boolean> {
    const status = start.status ?? 'running';
    if (status !== 'accepted' && status !== 'running') {
      throw new StorageError('invalid_argument', `recordStarted: status must be 'accepted' or 'running', got '${String(status)}'`);
    }
    return this.putNew(startItem(start, status));
  }

  /**
   * Records a flow that has already ended, start and end in one write: what a writer that learns of a
   * flow only at its end should call (one request instead of three). Returns false when the flow's end
   * was already recorded; a flow whose start alone was recorded is finished as by recordFinished.
   */
  async recordCompleted(start: Omit<FlowStart, 'status'>, finish: FlowFinish): Promise<boolean> {
    const flowId = checkId(start.flowId, 'flowId');
    const item = startItem(start, finish.status);
    Object.assign(item, checkFinish(finish), { errorCount: finish.errors?.length ?? 0 });
    for (const field of BLOB_FIELDS) {
      const value = finish[field];
      if (value === undefined) continue;
      const packed = await this.pack(flowId, field, value);
      item[packed.attribute] = packed.value;
    }
    if (await this.putNew(item)) return true;
    return this.recordFinished(flowId, finish);
  }

  private async putNew(item: Record<string, unknown>): Promise<boolean> {
    try {
      await this.doc.send(new PutCommand({ TableName: this.table, Item: item, ConditionExpression: 'attribute_not_exists(pk)' }));
      return true;
    } catch (err) {
      if (awsErrorName(err) === 'ConditionalCheckFailedException') return false;
      throw err;
    }
  }

  /**
   * Records a flow's end, once. Returns false when it was already finished: a replay never overwrites
   * the first outcome. Throws `not_found` when the flow was never started.
   */
  async recordFinished(flowId: string, finish: FlowFinish): Promise<boolean> {
    checkId(flowId, 'flowId');
    const { finishedAt } = checkFinish(finish);

    // Read first: the status index key needs the tenant, and a replay should not upload to S3 again.
    const current = await this.doc.send(
      new GetCommand({
        TableName: this.table,
        Key: { pk: flowPk(flowId) },
        ProjectionExpression: '#tenant, gsi2sk, finishedAt',
        ExpressionAttributeNames: { '#tenant': 'tenant' },
        ConsistentRead: true,
      }),
    );
    const item = current.Item as { tenant?: string; gsi2sk?: string; finishedAt?: string } | undefined;
    if (!item?.tenant || !item.gsi2sk) {
      throw new StorageError('not_found', `flow record ${flowId} does not exist: recordStarted must come first`);
    }
    if (item.finishedAt !== undefined) return false;

    const names: Record<string, string> = { '#status': 'status' };
    const values: Record<string, unknown> = {
      ':status': finish.status,
      ':finishedAt': finishedAt,
      ':durationMs': finish.durationMs,
      ':gsi2pk': tenantStatusPk(item.tenant, finish.status),
      ':errorCount': finish.errors?.length ?? 0,
    };
    const sets = ['#status = :status', 'finishedAt = :finishedAt', 'durationMs = :durationMs', 'gsi2pk = :gsi2pk', 'errorCount = :errorCount'];
    for (const field of BLOB_FIELDS) {
      const value = finish[field];
      if (value === undefined) continue;
      const packed = await this.pack(flowId, field, value);
      sets.push(`${packed.attribute} = :${field}`);
      values[`:${field}`] = packed.value;
    }
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: { pk: flowPk(flowId) },
          UpdateExpression: `SET ${sets.join(', ')}`,
          ConditionExpression: 'attribute_exists(pk) AND attribute_not_exists(finishedAt)',
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
        }),
      );
      return true;
    } catch (err) {
      // Lost a race with another writer of the same outcome.
      if (awsErrorName(err) === 'ConditionalCheckFailedException') return false;
      throw err;
    }
  }

  /**
   * A flow's record, or undefined. Claim-checked fields are fetched from S3 unless `resolve` is false
   * (then only their `...Ref` is set).
   */
  async get(flowId: string, opts: { resolve?: boolean } = {}): Promise<FlowRecord | undefined> {
    checkId(flowId, 'flowId');
    const res = await this.doc.send(new GetCommand({ TableName: this.table, Key: { pk: flowPk(flowId) }, ConsistentRead: true }));
    if (!res.Item) return undefined;
    const item = res.Item as Record<string, unknown>;
    const record = toSummary(item) as FlowRecord;
    for (const key of ['callbackUrl', 'version', 'traceId'] as const) {
      if (typeof item[key] === 'string') record[key] = item[key];
    }
    await Promise.all(
      BLOB_FIELDS.map(async (field) => {
        const json = item[`${field}Json`];
        const ref = item[`${field}Ref`];
        if (typeof json === 'string') {
          setBlob(record, field, parseJson(json, `${field} of flow ${flowId}`));
        } else if (typeof ref === 'string') {
          record[`${field}Ref`] = ref;
          if (opts.resolve !== false) setBlob(record, field, await this.fetchBlob(flowId, field, ref));
        }
      }),
    );
    return record;
  }

  /**
   * A tenant's flows, newest first, optionally only those with one status. Pass the returned cursor to
   * get the next page. Reads an index, which on real DynamoDB is eventually consistent: a flow started
   * a moment ago may be missing from a listing for a moment.
   */
  async list(query: FlowListQuery): Promise<FlowPage> {
    const tenant = checkTenant(query.tenant);
    const limit = query.limit ?? 20;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
      throw new StorageError('invalid_argument', `limit must be an integer from 1 to 1000, got ${limit}`);
    }
    if (query.status !== undefined && !ALL_STATUSES.includes(query.status)) {
      throw new StorageError('invalid_argument', `unknown status '${String(query.status)}'; one of ${ALL_STATUSES.join(', ')}`);
    }
    const byStatus = query.status !== undefined;
    const index = byStatus ? FLOW_INDEX_BY_TENANT_STATUS : FLOW_INDEX_BY_TENANT;
    const pkName = byStatus ? 'gsi2pk' : 'gsi1pk';
    const skName = byStatus ? 'gsi2sk' : 'gsi1sk';
    const indexPk = query.status !== undefined ? tenantStatusPk(tenant, query.status) : tenantPk(tenant);

    let startKey: Record<string, string> | undefined;
    if (query.cursor) {
      const pos = decodeCursor(query.cursor, { index, indexPk });
      startKey = { pk: pos.pk, [pkName]: pos.indexPk, [skName]: pos.indexSk };
    }

    // Ask for one more than needed to know whether another page exists; loop because a page may stop
    // early at DynamoDB's 1 MB response limit.
    const items: Record<string, unknown>[] = [];
    for (;;) {
      const res = await this.doc.send(
        new QueryCommand({
          TableName: this.table,
          IndexName: index,
          KeyConditionExpression: '#pk = :pk',
          ExpressionAttributeNames: { '#pk': pkName },
          ExpressionAttributeValues: { ':pk': indexPk },
          ScanIndexForward: false,
          Limit: limit + 1 - items.length,
          ...(startKey ? { ExclusiveStartKey: startKey } : {}),
        }),
      );
      items.push(...((res.Items ?? []) as Record<string, unknown>[]));
      if (items.length > limit || !res.LastEvaluatedKey) break;
      startKey = res.LastEvaluatedKey as Record<string, string>;
    }

    const page = items.slice(0, limit);
    const last = page[page.length - 1];
    const more = items.length > limit && last !== undefined;
    return {
      items: page.map(toSummary),
      ...(more ? { cursor: encodeCursor({ index, indexPk, indexSk: String(last[skName]), pk: String(last.pk) }) } : {}),
    };
  }

  // A missing blob must not read as "unknown flow" (not_found would become a 404 for a flow that exists).
  private async fetchBlob(flowId: string, field: BlobField, ref: string): Promise<unknown> {
    try {
      return await this.objects.getJson(ref);
    } catch (err) {
      if (isStorageError(err, 'not_found')) {
        throw new StorageError('invalid_data', `${field} of flow ${flowId} are missing from ${ref}`, { cause: err });
      }
      throw err;
    }
  }

  private async pack(flowId: string, field: BlobField, value: unknown): Promise<{ attribute: string; value: string }> {
    const json = JSON.stringify(value);
    if (json === undefined) throw new StorageError('invalid_argument', `${field} of flow ${flowId} cannot be written as JSON`);
    const bytes = Buffer.from(json);
    const claim = await this.objects.claimCheck(bytes, {
      thresholdBytes: this.inlineLimit,
      // Content-addressed under the flow: a losing racer's upload never replaces the recorded one.
      keyPrefix: `flows/${encodeURIComponent(flowId)}/${field}/`,
      contentType: 'application/json',
    });
    return claim.ref !== undefined ? { attribute: `${field}Ref`, value: claim.ref } : { attribute: `${field}Json`, value: json };
  }
}

/** The item of a flow's start: keys of the table and both indexes, and the start's attributes. */
function startItem(start: Omit<FlowStart, 'status'>, status: FlowStatus): Record<string, unknown> {
  const flowId = checkId(start.flowId, 'flowId');
  const tenant = checkTenant(start.tenant);
  const flow = checkId(start.flow, 'flow');
  const startedAt = toIso(start.startedAt, 'startedAt');
  const sk = timeSk(startedAt, flowId);
  return {
    pk: flowPk(flowId),
    gsi1pk: tenantPk(tenant),
    gsi1sk: sk,
    gsi2pk: tenantStatusPk(tenant, status),
    gsi2sk: sk,
    flowId,
    flow,
    tenant,
    status,
    startedAt,
    deadlineAt: start.deadlineAt === undefined ? undefined : toIso(start.deadlineAt, 'deadlineAt'),
    idempotencyKey: start.idempotencyKey,
    callbackUrl: start.callbackUrl,
    metadata: start.metadata,
    version: start.version,
    traceId: start.traceId,
  };
}

/** The validated end attributes of a flow. */
function checkFinish(finish: FlowFinish): { finishedAt: string; durationMs: number } {
  if (!FINAL_FLOW_STATUSES.includes(finish.status)) {
    throw new StorageError('invalid_argument', `recordFinished: status must be one of ${FINAL_FLOW_STATUSES.join(', ')}, got '${String(finish.status)}'`);
  }
  if (!Number.isFinite(finish.durationMs) || finish.durationMs < 0) {
    throw new StorageError('invalid_argument', `recordFinished: durationMs must be a non-negative number, got ${finish.durationMs}`);
  }
  return { finishedAt: toIso(finish.finishedAt, 'finishedAt'), durationMs: finish.durationMs };
}

function toSummary(item: Record<string, unknown>): FlowSummary {
  const summary: Record<string, unknown> = {};
  for (const key of SUMMARY_ATTRIBUTES) {
    if (item[key] !== undefined) summary[key] = item[key];
  }
  return summary as unknown as FlowSummary;
}

function setBlob(record: FlowRecord, field: BlobField, value: unknown): void {
  if (field === 'errors') record.errors = value as FlowTaskError[];
  else record[field] = value;
}

function parseJson(json: string, what: string): unknown {
  try {
    return JSON.parse(json);
  } catch (cause) {
    throw new StorageError('invalid_data', `${what} is not valid JSON`, { cause });
  }
}

function checkId(value: string, what: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 512) {
    throw new StorageError('invalid_argument', `${what} must be a string of 1 to 512 characters`);
  }
  return value;
}

// `#` separates the parts of the index keys; keep them unambiguous.
function checkTenant(tenant: string): string {
  checkId(tenant, 'tenant');
  if (tenant.includes('#')) throw new StorageError('invalid_argument', `tenant must not contain '#': '${tenant}'`);
  return tenant;
}

// Normalised to toISOString() so that index order is time order ('...:00Z' would sort after '...:00.5Z').
function toIso(value: string | Date, what: string): string {
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) {
    throw new StorageError('invalid_argument', `${what} is not a valid date: '${String(value)}'`);
  }
  return date.toISOString();
}
