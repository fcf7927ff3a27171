import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { createDynamoClient, createS3Client } from './clients.js';
import { FlowRecords } from './flow-records.js';
import { startLocalAws, type LocalAws } from './local-aws.js';
import { ObjectStore } from './object-store.js';

const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

function storeFor(aws: LocalAws) {
  const config = { s3Endpoint: aws.s3Endpoint, dynamoEndpoint: aws.dynamoEndpoint, credentials };
  const s3 = createS3Client(config);
  const dynamo = createDynamoClient(config);
  const objects = new ObjectStore({ s3, bucket: 'persist-test' });
  const flows = new FlowRecords({ dynamo, objects });
  return { s3, dynamo, objects, flows, close: () => (s3.destroy(), dynamo.destroy()) };
}

describe('startLocalAws', () => {
  test('env points at loopback servers with the local credentials', async () => {
    const aws = await startLocalAws();
    try {
      assert.match(aws.s3Endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.match(aws.dynamoEndpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(aws.env.AWS_ENDPOINT_URL_S3, aws.s3Endpoint);
      assert.equal(aws.env.AWS_ENDPOINT_URL_DYNAMODB, aws.dynamoEndpoint);
      assert.equal(aws.env.AWS_REGION, 'us-east-1');
      assert.equal(aws.env.AWS_ACCESS_KEY_ID, 'S3RVER');
      assert.equal(aws.env.AWS_SECRET_ACCESS_KEY, 'S3RVER');
    } finally {
      await aws.stop();
    }
  });

  test('with a dir, S3 objects and DynamoDB items survive a restart', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'jetflow-aws-test-'));
    try {
      const first = await startLocalAws({ dir });
      const a = storeFor(first);
      await a.objects.ensureBucket();
      await a.flows.ensureTable();
      const { ref } = await a.objects.putJson('kept.json', { kept: 1 });
      await a.flows.recordStarted({ flowId: 'p1', flow: 'insights', tenant: 't', startedAt: '2024-01-01T00:00:00Z' });
      a.close();
      await first.stop();

      const second = await startLocalAws({ dir });
      const b = storeFor(second);
      try {
        assert.deepEqual(await b.objects.getJson(ref), { kept: 1 });
        assert.equal((await b.flows.get('p1'))?.flowId, 'p1');
      } finally {
        b.close();
        await second.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('the CLI prints its endpoints as one JSON line and stops cleanly on SIGTERM', async () => {
    const main = fileURLToPath(new URL('./local-aws-main.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', main], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const lines = createInterface({ input: child.stdout });
      const first = await new Promise<string>((resolve, reject) => {
        lines.once('line', resolve);
        child.once('exit', (code) => reject(new Error(`CLI exited with ${code} before printing: ${stderr}`)));
      });
      const info = JSON.parse(first) as { s3Endpoint: string; dynamoEndpoint: string; env: Record<string, string> };
      assert.equal(info.env.AWS_ENDPOINT_URL_S3, info.s3Endpoint);

      const dynamo = createDynamoClient({ dynamoEndpoint: info.dynamoEndpoint, credentials });
      const s3 = createS3Client({ s3Endpoint: info.s3Endpoint, credentials });
      try {
        assert.deepEqual((await dynamo.send(new ListTablesCommand({}))).TableNames, []);
        await new ObjectStore({ s3, bucket: 'cli-test' }).ensureBucket();
      } finally {
        dynamo.destroy();
        s3.destroy();
      }
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, `CLI exit code (stderr: ${stderr})`);
  });

  test('the CLI rejects a bad port with a message naming the flag', async () => {
    const main = fileURLToPath(new URL('./local-aws-main.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', main, '--s3-port', 'abc'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 1);
    assert.match(stderr, /--s3-port/);
  });
});
