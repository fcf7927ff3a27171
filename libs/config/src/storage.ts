import { int, oneOf, optStr, type Env } from './env.js';

/**
 * When the services use S3 and DynamoDB, from the standard AWS variables: a region or an endpoint
 * means "there is an AWS (or a local stand-in) to talk to". The clients themselves are configured by
 * libs/storage (storageConfigFromEnv); this only decides what is switched on.
 */
export function s3Configured(env: Env): boolean {
  return !!(optStr(env, 'AWS_ENDPOINT_URL_S3') ?? optStr(env, 'AWS_ENDPOINT_URL') ?? optStr(env, 'AWS_REGION'));
}

export function dynamoConfigured(env: Env): boolean {
  return !!(optStr(env, 'AWS_ENDPOINT_URL_DYNAMODB') ?? optStr(env, 'AWS_ENDPOINT_URL') ?? optStr(env, 'AWS_REGION'));
}

export const DEFAULT_CLAIM_CHECK_BYTES = 256 * 1024;

/**
 * JETFLOW_CLAIM_CHECK_BYTES: a flow input whose JSON is larger goes to S3 and travels as a reference.
 * Default 256 KiB when S3 is configured, else 0 (off). Set explicitly, S3 is reached through the SDK's defaults.
 */
export function claimCheckBytes(env: Env): number {
  return int(env, 'JETFLOW_CLAIM_CHECK_BYTES', s3Configured(env) ? DEFAULT_CLAIM_CHECK_BYTES : 0, { min: 0, max: 64 * 1024 * 1024 });
}

/**
 * JETFLOW_HISTORY: `dynamodb` keeps every finished flow in the DynamoDB flow table (queryable after
 * the KV state expires), `off` does not. Default `dynamodb` when DynamoDB is configured.
 */
export function historyMode(env: Env): 'dynamodb' | 'off' {
  return oneOf(env, 'JETFLOW_HISTORY', ['dynamodb', 'off'] as const, dynamoConfigured(env) ? 'dynamodb' : 'off');
}
