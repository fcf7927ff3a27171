import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { fromBinary, type DescMessage } from '@bufbuild/protobuf';
import { deriveFlowId } from '@jetflow/flows';
import { mulberry32 } from '@jetflow/random';
import { jetflowPerSuite, sampleSubmission, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';
import { ingestClient } from './grpc-client.js';
import { malformed, PROMPT_MS, rawClient, REQUEST_SCHEMAS, validRequests } from './grpc-raw.js';

const OTHER_KEY = 'other-key-0123456789abcdef';

/** How a WatchFlow call ended: its status code and message, or that no status came within `ms`. */
async function watchOutcome(address: string, flowId: string, key: string | undefined, ms = PROMPT_MS): Promise<{ code: number; details: string; events: string[] } | 'no status'> {
  const client = ingestClient(address, key);
  const events: string[] = [];
  let timer: NodeJS.Timeout | undefined;
  const stream = client.watch(flowId) as AsyncIterable<{ type: string; status: string }> & { cancel?: () => void };
  try {
    const ended = (async () => {
      try {
        for await (const ev of stream) events.push(`${ev.type}:${ev.status}`);
        return { code: grpc.status.OK, details: 'OK', events };
      } catch (err) {
        const e = err as grpc.ServiceError;
        return { code: e.code, details: e.details, events };
      }
    })();
    const late = new Promise<'no status'>((r) => (timer = setTimeout(() => r('no status'), ms)));
    return await Promise.race([ended, late]);
  } finally {
    clearTimeout(timer);
    stream.cancel?.();
    client.close();
  }
}

const decodes = (schema: DescMessage, b: Uint8Array) => {
  try {
    fromBinary(schema, b);
    return true;
  } catch {
    return false;
  }
};

describe('gRPC errors', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  jetflowPerSuite((s) => ({ j, cb } = s), { jetflow: { env: { JETFLOW_TASK_MODE: 'noop' } } });

  test("WatchFlow ends at once with NOT_FOUND or UNAUTHENTICATED for an unknown flow, another tenant's flow, no key or a wrong key (no client deadline)", async () => {
    const theirs = await ingestClient(j.grpc, OTHER_KEY).submit(sampleSubmission(cb.url, { idempotencyKey: 'grpc-errors-other' }));
    const cases: Array<[string, string, string | undefined, number, RegExp]> = [
      ['unknown flow', deriveFlowId('default', 'never-submitted'), j.apiKey, grpc.status.NOT_FOUND, /not found/],
      ['malformed flow id', 'not a flow id', j.apiKey, grpc.status.NOT_FOUND, /not found/],
      ["another tenant's flow", theirs.flowId, j.apiKey, grpc.status.NOT_FOUND, /not found/],
      ['no key', theirs.flowId, undefined, grpc.status.UNAUTHENTICATED, /missing Authorization/],
      ['wrong key', theirs.flowId, 'wrong-key-0123456789abcdef', grpc.status.UNAUTHENTICATED, /unknown API key/],
    ];
    for (const [what, flowId, key, code, message] of cases) {
      const out = await watchOutcome(j.grpc, flowId, key);
      assert.notEqual(out, 'no status', `${what}: no status within ${PROMPT_MS} ms`);
      if (out === 'no status') continue;
      assert.equal(out.code, code, `${what}: ${grpc.status[out.code]} ${out.details}`);
      assert.match(out.details, message, what);
      assert.deepEqual(out.events, [], `${what}: no events before the status`);
    }
    // The tenant that owns the flow still follows it: a snapshot first, and the stream ends OK.
    const own = await watchOutcome(j.grpc, theirs.flowId, OTHER_KEY, 60_000);
    assert.notEqual(own, 'no status');
    if (own !== 'no status') {
      assert.equal(own.code, grpc.status.OK, own.details);
      assert.match(own.events[0] ?? '', /^snapshot:/);
    }
  });

  test('a flow accepted a moment ago is followed by WatchFlow, not refused', async () => {
    const client = ingestClient(j.grpc, j.apiKey);
    const { flowId } = await client.submit(sampleSubmission(cb.url));
    client.close();
    const out = await watchOutcome(j.grpc, flowId, j.apiKey, 60_000);
    assert.notEqual(out, 'no status');
    if (out === 'no status') return;
    assert.equal(out.code, grpc.status.OK, out.details);
    assert.match(out.events[0] ?? '', /^snapshot:/);
    assert.ok(
      out.events.some((e) => /:succeeded$/.test(e)),
      out.events.join(' '),
    );
  });

  test('undecodable requests to every method get INVALID_ARGUMENT naming the message type; decodable ones a typed status, never INTERNAL or UNKNOWN; the server keeps serving', async () => {
    const done = await ingestClient(j.grpc, j.apiKey).submit(sampleSubmission(cb.url, { idempotencyKey: 'grpc-errors-done' }));
    const valid = validRequests(done.flowId, 'k1');
    const schemas = REQUEST_SCHEMAS;
    const raw = rawClient(j.grpc);
    const rng = mulberry32(20_240_611);
    const wrong: string[] = [];
    let undecodable = 0;
    try {
      for (const method of Object.keys(valid) as Array<keyof typeof valid>) {
        const schema = schemas[method];
        const inputs = Array.from({ length: 100 }, () => malformed(rng, valid[method]));
        for (let i = 0; i < inputs.length; i += 20) {
          const batch = inputs.slice(i, i + 20);
          const outs = await Promise.all(batch.map((b) => (method === 'WatchFlow' ? raw.stream(method, b, j.apiKey) : raw.unary(method, b, j.apiKey))));
          outs.forEach((out, k) => {
            const bytes = batch[k]!;
            const tag = `${method} ${bytes.toString('hex')}: ${grpc.status[out.code]} ${out.details}`;
            if (!decodes(schema, bytes)) {
              undecodable++;
              if (out.code !== grpc.status.INVALID_ARGUMENT || !out.details.startsWith(`request is not a valid ${schema.typeName}: `)) wrong.push(tag);
            } else if (out.code === grpc.status.INTERNAL || out.code === grpc.status.UNKNOWN) wrong.push(tag);
          });
        }
      }
    } finally {
      raw.close();
    }
    assert.deepEqual(wrong, [], `${wrong.length} answers were wrong`);
    assert.ok(undecodable > 150, `only ${undecodable} of 400 inputs were undecodable; the test would not show much`);
    const client = ingestClient(j.grpc, j.apiKey);
    const after = await client.submit(sampleSubmission(cb.url));
    assert.equal(after.status, 'accepted');
    assert.ok((await client.get(done.flowId)).flow);
    client.close();
  });
});
