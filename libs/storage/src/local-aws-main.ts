/**
 * Runs local S3 and DynamoDB (s3rver + dynalite) until SIGINT/SIGTERM. Prints one JSON line:
 *   {"s3Endpoint":"http://127.0.0.1:…","dynamoEndpoint":"http://127.0.0.1:…","env":{…}}
 * Usage: node --import tsx libs/storage/src/local-aws-main.ts [--dir DIR] [--s3-port N] [--dynamo-port N] [--host H]
 */
import { parseArgs } from 'node:util';
import { startLocalAws, type LocalAwsOptions } from './local-aws.js';

function port(value: string | undefined, flag: string): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`${flag} must be a port number (0-65535), got '${value}'`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      dir: { type: 'string' },
      's3-port': { type: 'string' },
      'dynamo-port': { type: 'string' },
      host: { type: 'string' },
    },
    strict: true,
  });
  const opts: LocalAwsOptions = {};
  if (values.dir) opts.dir = values.dir;
  if (values.host) opts.host = values.host;
  const s3Port = port(values['s3-port'], '--s3-port');
  const dynamoPort = port(values['dynamo-port'], '--dynamo-port');
  if (s3Port !== undefined) opts.s3Port = s3Port;
  if (dynamoPort !== undefined) opts.dynamoPort = dynamoPort;

  const aws = await startLocalAws(opts);
  process.stdout.write(`${JSON.stringify({ s3Endpoint: aws.s3Endpoint, dynamoEndpoint: aws.dynamoEndpoint, env: aws.env })}\n`);

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    aws.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`local-aws: error while stopping on ${signal}: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

main().catch((err: unknown) => {
  process.stderr.write(`local-aws: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
