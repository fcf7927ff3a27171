import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { repoRoot } from '@jetflow/stack';
import { EXIT } from '../scripts/cli/exit.js';
import { jetflowPerSuite, sampleSubmission, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';
import { ingestClient } from './grpc-client.js';

// The harness's keys: `default` holds an operator key (j.apiKey), `other` a plain tenant key.
const TENANT_KEY = 'other-key-0123456789abcdef';
const OPERATOR_ONLY = ['/v1/consumers', '/v1/routes', '/v1/routes?subject=jetflow.task.analyst.>'];

function cli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [join(repoRoot(), 'dist', 'scripts', 'jetflow.js'), ...args], {
      env: { PATH: process.env.PATH ?? '', NO_COLOR: '1', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stderr }));
  });
}

describe('system-wide views are for operator keys only', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  jetflowPerSuite((s) => ({ j, cb } = s), { jetflow: { aws: false, env: { JETFLOW_TASK_MODE: 'noop' } } });
  const as = (key: string, path: string) => fetch(`${j.http}${path}`, { headers: { authorization: `Bearer ${key}` } });

  test('a tenant key gets 403 permission_denied on every operator-only route; the operator key gets 200', async () => {
    for (const path of OPERATOR_ONLY) {
      const refused = await as(TENANT_KEY, path);
      assert.equal(refused.status, 403, path);
      const body = (await refused.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, 'permission_denied', path);
      assert.match(body.error.message, /is a system-wide view and needs an operator API key; this is a tenant key \(tenant "other"\)/);
      assert.equal((await as(j.apiKey, path)).status, 200, path);
    }
    const consumers = (await (await as(j.apiKey, '/v1/consumers')).json()) as { consumers: Array<{ name: string }> };
    assert.ok(consumers.consumers.some((c) => c.name === 'orchestrator-ingest-default'));
    // No key is still 401, not 403.
    assert.equal((await fetch(`${j.http}/v1/consumers`)).status, 401);
  });

  test('a tenant key keeps everything that is its own: submit, get, list, its dead letters, gRPC', async () => {
    const sub = await fetch(`${j.http}/v1/flows`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TENANT_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify(sampleSubmission(cb.url)),
    });
    assert.equal(sub.status, 202);
    const { flowId } = (await sub.json()) as { flowId: string };
    await cb.waitForFlows([flowId]);
    assert.equal((await as(TENANT_KEY, `/v1/flows/${flowId}`)).status, 200);
    const listed = (await (await as(TENANT_KEY, '/v1/flows')).json()) as { flows: Array<{ flowId: string }> };
    assert.ok(listed.flows.some((f) => f.flowId === flowId));
    assert.equal((await as(TENANT_KEY, '/v1/deadletters')).status, 200);
    // The operator key is a key of tenant default: another tenant's flow stays invisible to it.
    assert.equal((await as(j.apiKey, `/v1/flows/${flowId}`)).status, 404);
    const g = ingestClient(j.grpc, TENANT_KEY);
    try {
      assert.equal((await g.submit(sampleSubmission(cb.url))).status, 'accepted');
      await assert.rejects(g.get('fnope00000000000000000000'), (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND);
    } finally {
      g.close();
    }
  });

  test('the OpenAPI document lists 403 permission_denied on the operator-only routes', async () => {
    const doc = (await (await fetch(`${j.http}/docs/json`)).json()) as { paths: Record<string, Record<string, { responses: Record<string, { description: string }> }>> };
    for (const p of ['/v1/consumers', '/v1/routes']) assert.match(doc.paths[p]!.get!.responses['403']?.description ?? '', /`permission_denied`/, p);
    assert.equal(doc.paths['/v1/flows']!.get!.responses['403'], undefined, 'tenant routes do not answer 403');
  });

  test('the CLI says the view needs an operator key and exits with the auth code', async () => {
    const refused = await cli(['consumers'], { JETFLOW_URL: j.http, JETFLOW_API_KEY: TENANT_KEY });
    assert.equal(refused.code, EXIT.auth, refused.stderr);
    assert.match(refused.stderr, /permission_denied/);
    assert.match(refused.stderr, /needs an operator API key/);
    assert.match(refused.stderr, /key from JETFLOW_API_KEY; use an operator key: a JETFLOW_API_KEYS entry "<tenant>:operator:<key>"/);
    const allowed = await cli(['consumers'], { JETFLOW_URL: j.http, JETFLOW_API_KEY: j.apiKey });
    assert.equal(allowed.code, 0, allowed.stderr);
  });
});
