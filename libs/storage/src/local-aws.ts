import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface LocalAwsOptions {
  /** Keep data here (`<dir>/s3`, `<dir>/dynamodb`) across restarts; default: a temp dir, deleted on stop. */
  dir?: string;
  /** Default: a free port. */
  s3Port?: number;
  /** Default: a free port. */
  dynamoPort?: number;
  /** Default 127.0.0.1. */
  host?: string;
}

export interface LocalAws {
  s3Endpoint: string;
  dynamoEndpoint: string;
  /** The variables that point the AWS SDK (in this or a child process) at these servers. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

// Local access keys: s3rver checks signatures against S3RVER/S3RVER; dynalite accepts any.
const LOCAL_ACCESS_KEY = 'S3RVER';

interface S3rverInstance {
  httpServer?: Server;
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
type S3rverCtor = new (opts: Record<string, unknown>) => S3rverInstance;
type Dynalite = (opts: Record<string, unknown>) => Server;

/**
 * Starts s3rver and dynalite in this process: the S3 and DynamoDB of a laptop and of the tests,
 * reached through the same AWS SDK code as production. Both are dev dependencies, loaded only here.
 */
export async function startLocalAws(opts: LocalAwsOptions = {}): Promise<LocalAws> {
  const require = createRequire(import.meta.url);
  const S3rver = require('s3rver') as S3rverCtor;
  const dynalite = require('dynalite') as Dynalite;
  const host = opts.host ?? '127.0.0.1';

  const tempDir = opts.dir ? undefined : await mkdtemp(join(tmpdir(), 'jetflow-aws-'));
  const s3Dir = join(opts.dir ?? tempDir ?? '', 's3');
  await mkdir(s3Dir, { recursive: true });
  let dynamoPath: string | undefined;
  if (opts.dir) {
    dynamoPath = join(opts.dir, 'dynamodb');
    await mkdir(dynamoPath, { recursive: true });
  }

  const s3 = new S3rver({ address: host, port: opts.s3Port ?? 0, silent: true, directory: s3Dir });
  let s3Running = false;
  const dynamo = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0, ...(dynamoPath ? { path: dynamoPath } : {}) });
  let dynamoListening = false;

  const stop = async () => {
    const errors: unknown[] = [];
    if (s3Running) {
      s3Running = false;
      s3.httpServer?.closeAllConnections();
      await s3.close().catch((e: unknown) => errors.push(e));
    }
    if (dynamoListening) {
      dynamoListening = false;
      // Keep-alive sockets of SDK clients would hold close() open.
      dynamo.closeAllConnections();
      await new Promise<void>((resolve) =>
        dynamo.close((err) => {
          if (err) errors.push(err);
          resolve();
        }),
      );
    }
    if (tempDir) await rm(tempDir, { recursive: true, force: true });
    if (errors.length > 0) throw new AggregateError(errors, 'stopping local AWS failed');
  };

  try {
    const s3Addr = await s3.run();
    s3Running = true;
    await new Promise<void>((resolve, reject) => {
      dynamo.once('error', reject);
      dynamo.listen(opts.dynamoPort ?? 0, host, () => {
        dynamo.off('error', reject);
        resolve();
      });
    });
    dynamoListening = true;
    const dynamoAddr = dynamo.address() as AddressInfo;
    const urlHost = host.includes(':') ? `[${host}]` : host;
    const s3Endpoint = `http://${urlHost}:${s3Addr.port}`;
    const dynamoEndpoint = `http://${urlHost}:${dynamoAddr.port}`;
    return {
      s3Endpoint,
      dynamoEndpoint,
      env: {
        AWS_ENDPOINT_URL_S3: s3Endpoint,
        AWS_ENDPOINT_URL_DYNAMODB: dynamoEndpoint,
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: LOCAL_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY: LOCAL_ACCESS_KEY,
        // The SDK warns on every process start that Node 20 support ends in 2027; noise on a laptop.
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      },
      stop,
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw new Error(`cannot start local AWS (s3rver + dynalite): ${(err as Error).message}`, { cause: err });
  }
}
