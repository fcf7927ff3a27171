import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { awsConfigFromEnv, checkEndpoint, DEFAULT_REGION, type AwsClientConfig } from './config.js';

const DEFAULT_CONNECTION_TIMEOUT_MS = 5_000;
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/**
 * An S3 client for `config`, or for the standard AWS environment when no config is given.
 * Path-style addressing is on whenever an endpoint is set: s3rver and MinIO do not serve `<bucket>.host`.
 */
export function createS3Client(config: AwsClientConfig = awsConfigFromEnv()): S3Client {
  const endpoint = config.s3Endpoint === undefined ? undefined : checkEndpoint(config.s3Endpoint, 's3Endpoint');
  return new S3Client({
    region: config.region ?? DEFAULT_REGION,
    ...(endpoint ? { endpoint } : {}),
    forcePathStyle: config.forcePathStyle ?? endpoint !== undefined,
    ...(config.credentials ? { credentials: config.credentials } : {}),
    requestHandler: requestHandlerOptions(config),
  });
}

/** A low-level DynamoDB client for `config`, or for the standard AWS environment. */
export function createDynamoClient(config: AwsClientConfig = awsConfigFromEnv()): DynamoDBClient {
  const endpoint = config.dynamoEndpoint === undefined ? undefined : checkEndpoint(config.dynamoEndpoint, 'dynamoEndpoint');
  return new DynamoDBClient({
    region: config.region ?? DEFAULT_REGION,
    ...(endpoint ? { endpoint } : {}),
    ...(config.credentials ? { credentials: config.credentials } : {}),
    requestHandler: requestHandlerOptions(config),
  });
}

/**
 * The document client (plain JS values instead of attribute-value maps). `undefined` properties are
 * dropped rather than rejected, as optional fields of records are routinely undefined.
 */
export function createDocumentClient(client: DynamoDBClient): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
  });
}

// Without timeouts a half-open connection would hang a flow forever; the SDK retries timed-out calls.
function requestHandlerOptions(config: AwsClientConfig) {
  return {
    connectionTimeout: config.connectionTimeoutMs ?? DEFAULT_CONNECTION_TIMEOUT_MS,
    requestTimeout: config.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
  };
}
