import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createDynamoClient, createS3Client } from './clients.js';
import { awsConfigFromEnv, storageConfigFromEnv } from './config.js';
import { isStorageError } from './errors.js';
import { startLocalAws, type LocalAws } from './local-aws.js';
import { createStorage } from './storage.js';

describe('awsConfigFromEnv', () => {
  test('defaults with an empty environment', () => {
    assert.deepEqual(awsConfigFromEnv({}), { region: 'us-east-1' });
    assert.deepEqual(storageConfigFromEnv({}), { region: 'us-east-1', bucket: 'jetflow-data', table: 'jetflow-flows', inputRefPrefixes: ['s3://jetflow-data/uploads/{tenant}/'] });
  });

  test('reads the standard variables; blank means unset', () => {
    assert.deepEqual(
      awsConfigFromEnv({
        AWS_REGION: 'eu-west-1',
        AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:4568',
        AWS_ENDPOINT_URL_DYNAMODB: ' ',
        AWS_ENDPOINT_URL: 'http://localhost:4566',
      }),
      { region: 'eu-west-1', s3Endpoint: 'http://127.0.0.1:4568', dynamoEndpoint: 'http://localhost:4566' },
    );
    assert.deepEqual(awsConfigFromEnv({ AWS_REGION: '', AWS_ENDPOINT_URL_S3: '' }), { region: 'us-east-1' });
    assert.deepEqual(awsConfigFromEnv({ AWS_ENDPOINT_URL_S3: 'http://x:1', AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: 'true' }), { region: 'us-east-1' });
    assert.deepEqual(storageConfigFromEnv({ JETFLOW_S3_BUCKET: 'b-1', JETFLOW_FLOWS_TABLE: 't-1' }), {
      region: 'us-east-1',
      bucket: 'b-1',
      table: 't-1',
      inputRefPrefixes: ['s3://b-1/uploads/{tenant}/'],
    });
    assert.deepEqual(storageConfigFromEnv({ JETFLOW_INPUT_REF_PREFIXES: ' s3://in-1/a/{tenant}/, s3://in-2/shared/' }).inputRefPrefixes, ['s3://in-1/a/{tenant}/', 's3://in-2/shared/']);
    assert.throws(
      () => storageConfigFromEnv({ JETFLOW_INPUT_REF_PREFIXES: 'bucket/x' }),
      (err: unknown) => isStorageError(err, 'invalid_argument') && /JETFLOW_INPUT_REF_PREFIXES: "bucket\/x"/.test(err.message),
    );
  });

  test('a malformed endpoint fails naming the variable', () => {
    assert.throws(
      () => awsConfigFromEnv({ AWS_ENDPOINT_URL_DYNAMODB: 'localhost:8000' }),
      (err: unknown) => isStorageError(err, 'invalid_argument') && /AWS_ENDPOINT_URL_DYNAMODB/.test(err.message),
    );
    assert.throws(() => awsConfigFromEnv({ AWS_ENDPOINT_URL_S3: 'not a url' }), /AWS_ENDPOINT_URL_S3/);
    assert.throws(() => createS3Client({ s3Endpoint: 'nope' }), /s3Endpoint/);
  });
});

describe('clients from the environment, against the local servers', () => {
  let aws: LocalAws;
  const saved = { ...process.env };

  before(async () => {
    aws = await startLocalAws();
    // What a child process of the local launcher sees.
    for (const key of Object.keys(process.env)) if (key.startsWith('AWS_')) delete process.env[key];
    Object.assign(process.env, aws.env);
  });
  after(async () => {
    process.env = saved;
    await aws.stop();
  });

  test('createS3Client() and createDynamoClient() with no arguments use the env', async () => {
    const s3 = createS3Client();
    const dynamo = createDynamoClient();
    try {
      assert.equal(s3.config.forcePathStyle, true);
      assert.equal(await s3.config.region(), 'us-east-1');
      const storage = createStorage(storageConfigFromEnv(process.env));
      try {
        await storage.ensure();
        const { ref } = await storage.objects.putJson('env/ok.json', { ok: true });
        assert.deepEqual(await storage.objects.getJson(ref), { ok: true });
        assert.equal(await storage.flows.recordStarted({ flowId: 'e1', flow: 'insights', tenant: 't', startedAt: new Date() }), true);
        assert.equal((await storage.flows.get('e1'))?.tenant, 't');
      } finally {
        storage.close();
      }
      const tables = await dynamo.send(new ListTablesCommand({}));
      assert.deepEqual(tables.TableNames, ['jetflow-flows']);
    } finally {
      s3.destroy();
      dynamo.destroy();
    }
  });

  test('a bare SDK client reads AWS_ENDPOINT_URL_S3 itself', async () => {
    const bare = new S3Client({ region: 'us-east-1', forcePathStyle: true });
    try {
      await bare.send(new PutObjectCommand({ Bucket: 'jetflow-data', Key: 'bare.txt', Body: 'hi' }));
      const got = await bare.send(new GetObjectCommand({ Bucket: 'jetflow-data', Key: 'bare.txt' }));
      assert.equal(await got.Body?.transformToString(), 'hi');
    } finally {
      bare.destroy();
    }
  });
});
