import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { BAD_REQUEST_TYPE_URL, STATUS_DETAILS_TRAILER, decodeRpcStatus } from '@jetflow/errors';
import { jetflowPerSuite, type JetflowUnderTest } from '@jetflow/testing';
import { ingestClient } from './grpc-client.js';

/** One body with two schema errors, a bad record and a callback to a private address (valid on both doors' wire). */
const manyWrongs = { flow: 'insights', input: { records: [{ id: 'a', text: 1 }] }, deadlineMs: 50, idempotencyKey: 'has space', callbackUrl: 'http://10.1.2.3/hook' };
const MANY_PATHS = ['callbackUrl', 'deadlineMs', 'idempotencyKey', 'input.records[0].text'];

describe('error details name every bad field at once', () => {
  let j: JetflowUnderTest;
  jetflowPerSuite((s) => ({ j } = s), { jetflow: { env: { JETFLOW_TASK_MODE: 'noop' } } });

  test('HTTP: a 400 lists the schema errors, the callbackUrl check and the input check together', async () => {
    const r = await j.api('/v1/flows', { method: 'POST', body: JSON.stringify(manyWrongs), headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 400);
    const body = (await r.json()) as { error: { code: string; details: Array<{ path: string; message: string }> } };
    assert.equal(body.error.code, 'invalid_argument');
    assert.deepEqual(body.error.details.map((d) => d.path).sort(), MANY_PATHS);
    assert.match(body.error.details.find((d) => d.path === 'callbackUrl')!.message, /not a public address/);
    const other = await j.api('/v1/flows', {
      method: 'POST',
      body: JSON.stringify({ flow: 'nope', input: {}, callbackUrl: 'ftp://example.com/x' }),
      headers: { 'content-type': 'application/json' },
    });
    assert.deepEqual(((await other.json()) as { error: { details: Array<{ path: string }> } }).error.details.map((d) => d.path).sort(), ['callbackUrl', 'flow']);
  });

  test('gRPC: grpc-status-details-bin holds a google.rpc.Status whose BadRequest names every bad field; the jetflow-error-* trailers stay', async () => {
    const client = ingestClient(j.grpc, j.apiKey);
    const noKey = ingestClient(j.grpc);
    try {
      const err = await client.submit(manyWrongs).then(
        () => assert.fail('accepted a bad submission'),
        (e: grpc.ServiceError) => e,
      );
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      const bin = err.metadata.get(STATUS_DETAILS_TRAILER);
      assert.equal(bin.length, 1, 'one grpc-status-details-bin trailer');
      assert.ok(Buffer.isBuffer(bin[0]));
      const st = decodeRpcStatus(bin[0]);
      assert.equal(st.code, grpc.status.INVALID_ARGUMENT, 'Status.code is the call status');
      assert.equal(st.message, err.details, 'Status.message is the status message');
      assert.deepEqual(st.detailTypes, [BAD_REQUEST_TYPE_URL]);
      assert.deepEqual(st.fieldViolations.map((v) => v.field).sort(), MANY_PATHS);
      assert.ok(
        st.fieldViolations.every((v) => v.description.length > 0),
        'each violation says what is wrong',
      );
      // The trailers of clients written before the standard details.
      const old = JSON.parse(String(err.metadata.get('jetflow-error-details')[0])) as Array<{ path: string; message: string }>;
      assert.deepEqual(
        old.map((d) => [d.path, d.message]),
        st.fieldViolations.map((v) => [v.field, v.description]),
      );
      assert.equal(err.metadata.get('jetflow-error-code')[0], 'invalid_argument');

      // Every error carries the standard status, without a BadRequest when no field is at fault.
      const unauth = await noKey.submit(manyWrongs).then(
        () => assert.fail('accepted without a key'),
        (e: grpc.ServiceError) => e,
      );
      assert.equal(unauth.code, grpc.status.UNAUTHENTICATED);
      const ust = decodeRpcStatus(unauth.metadata.get(STATUS_DETAILS_TRAILER)[0] as Buffer);
      assert.deepEqual([ust.code, ust.fieldViolations, ust.detailTypes], [grpc.status.UNAUTHENTICATED, [], []]);
    } finally {
      client.close();
      noKey.close();
    }
  });
});
