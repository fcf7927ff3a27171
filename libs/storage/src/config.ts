import type { S3ClientConfig } from '@aws-sdk/client-s3';
import { StorageError } from './errors.js';

export const DEFAULT_REGION = 'us-east-1';
export const DEFAULT_BUCKET = 'jetflow-data';
export const DEFAULT_FLOWS_TABLE = 'jetflow-flows';

/** What the AWS clients need. Everything is optional: the defaults reach real AWS in us-east-1. */
export interface AwsClientConfig {
  /** Default `us-east-1`. */
  region?: string;
  /** S3 endpoint URL (s3rver, MinIO...). When set, path-style addressing is used. */
  s3Endpoint?: string;
  /** DynamoDB endpoint URL (dynalite, DynamoDB Local...). */
  dynamoEndpoint?: string;
  /** Defaults to true when `s3Endpoint` is set: local servers do not resolve `<bucket>.host`. */
  forcePathStyle?: boolean;
  /** Defaults to the SDK's default chain (env, shared files, web identity, container/instance role). */
  credentials?: S3ClientConfig['credentials'];
  /** Give up on a connection attempt after this long. Default 5000 ms. */
  connectionTimeoutMs?: number;
  /** Give up on a request whose socket is idle this long. Default 30000 ms. */
  requestTimeoutMs?: number;
}

/** AWS clients plus where Jetflow keeps its data. */
export interface StorageConfig extends AwsClientConfig {
  /** Bucket for datasets and claim-checked payloads. Default `jetflow-data`. */
  bucket?: string;
  /** DynamoDB table for flow records. Default `jetflow-flows`. */
  table?: string;
  /**
   * Where a submission's `inputRef` may point, `{tenant}` standing for the submitting tenant
   * (JETFLOW_INPUT_REF_PREFIXES, comma-separated). Default `s3://<bucket>/uploads/{tenant}/`.
   */
  inputRefPrefixes?: string[];
}

type Env = Readonly<Record<string, string | undefined>>;

/**
 * Reads the standard AWS variables: `AWS_REGION`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL_DYNAMODB`,
 * `AWS_ENDPOINT_URL` (the fallback for both) and `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`. Credentials are
 * left to the SDK's default chain. Blank means unset; a malformed URL fails naming the variable.
 * Pass a service's env explicitly: this is the only function of the lib that looks at the environment.
 */
export function awsConfigFromEnv(env: Env = process.env): AwsClientConfig {
  const ignoreEndpoints = blankToUndefined(env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS)?.toLowerCase() === 'true';
  const config: AwsClientConfig = { region: blankToUndefined(env.AWS_REGION) ?? DEFAULT_REGION };
  if (!ignoreEndpoints) {
    const s3 = endpointFromEnv(env, 'AWS_ENDPOINT_URL_S3') ?? endpointFromEnv(env, 'AWS_ENDPOINT_URL');
    const dynamo = endpointFromEnv(env, 'AWS_ENDPOINT_URL_DYNAMODB') ?? endpointFromEnv(env, 'AWS_ENDPOINT_URL');
    if (s3) config.s3Endpoint = s3;
    if (dynamo) config.dynamoEndpoint = dynamo;
  }
  return config;
}

/**
 * `awsConfigFromEnv` plus the optional `JETFLOW_S3_BUCKET` and `JETFLOW_FLOWS_TABLE` overrides of the
 * bucket and table names.
 */
export function storageConfigFromEnv(env: Env = process.env): StorageConfig {
  return {
    ...awsConfigFromEnv(env),
    bucket: blankToUndefined(env.JETFLOW_S3_BUCKET) ?? DEFAULT_BUCKET,
    table: blankToUndefined(env.JETFLOW_FLOWS_TABLE) ?? DEFAULT_FLOWS_TABLE,
    inputRefPrefixes: inputRefPrefixesFromEnv(env),
  };
}

/** JETFLOW_INPUT_REF_PREFIXES: `s3://bucket/prefix` entries, comma-separated; default the bucket's `uploads/{tenant}/`. */
function inputRefPrefixesFromEnv(env: Env): string[] {
  const raw = blankToUndefined(env.JETFLOW_INPUT_REF_PREFIXES);
  if (!raw) return [`s3://${blankToUndefined(env.JETFLOW_S3_BUCKET) ?? DEFAULT_BUCKET}/uploads/{tenant}/`];
  return raw.split(',').map((p) => {
    const v = p.trim();
    if (!/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\//.test(v)) throw new StorageError('invalid_argument', `JETFLOW_INPUT_REF_PREFIXES: "${v}" is not s3://<bucket>/<prefix>`);
    return v;
  });
}

function endpointFromEnv(env: Env, name: string): string | undefined {
  const value = blankToUndefined(env[name]);
  if (value === undefined) return undefined;
  return checkEndpoint(value, name);
}

/** Validates an endpoint URL; `what` names its source in the error (a variable or a config field). */
export function checkEndpoint(value: string, what: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch (cause) {
    throw new StorageError('invalid_argument', `${what} is not a valid URL: '${value}'`, { cause });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new StorageError('invalid_argument', `${what} must be an http(s) URL, got '${value}'`);
  }
  return value;
}

function blankToUndefined(value: string | undefined): string | undefined {
  const v = value?.trim();
  return v ? v : undefined;
}
