export { createDocumentClient, createDynamoClient, createS3Client } from './clients.js';
export { awsConfigFromEnv, storageConfigFromEnv, DEFAULT_BUCKET, DEFAULT_FLOWS_TABLE, DEFAULT_REGION, type AwsClientConfig, type StorageConfig } from './config.js';
export { isStorageError, StorageError, type StorageErrorCode, type StorageErrorReason } from './errors.js';
export {
  FINAL_FLOW_STATUSES,
  FlowRecords,
  type FinalFlowStatus,
  type FlowFinish,
  type FlowListQuery,
  type FlowPage,
  type FlowRecord,
  type FlowRecordsOptions,
  type FlowStart,
  type FlowStatus,
  type FlowSummary,
  type FlowTaskError,
} from './flow-records.js';
export { FLOW_INDEX_BY_TENANT, FLOW_INDEX_BY_TENANT_STATUS, type EnsureTableOptions } from './flow-table.js';
export { startLocalAws, type LocalAws, type LocalAwsOptions } from './local-aws.js';
export {
  DEFAULT_CLAIM_KEY_PREFIX,
  DEFAULT_CLAIM_THRESHOLD_BYTES,
  ObjectStore,
  type Claim,
  type ClaimCheckOptions,
  type ObjectStoreOptions,
  type PutOptions,
  type StoredJsonLines,
  type StoredObject,
} from './object-store.js';
export { formatS3Ref, parseS3Ref, type S3Location } from './refs.js';
export { createStorage, type Storage } from './storage.js';
export { storageTaskError } from './task-errors.js';
export { inputClaim, inputKeyPrefix, type InputClaim } from './input-claim.js';
export { parseInputObject, readInputObject } from './input-ref.js';
