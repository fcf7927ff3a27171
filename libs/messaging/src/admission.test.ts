import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { create, toBinary } from '@bufbuild/protobuf';
import { AdmissionLoadSchema, FlowsEndedSchema } from '@jetflow/proto';
import { ADMISSION_LIMITS, decodeEnded, decodeLoad, encodeEnded, encodeLoad } from './admission.js';

const load = (v: Record<string, unknown>) => toBinary(AdmissionLoadSchema, create(AdmissionLoadSchema, v));

describe('admission reports off the bus', () => {
  test('round trip; zero counts are dropped', () => {
    const l = decodeLoad(
      encodeLoad({
        instance: 'orch-1',
        running: new Map([
          ['acme', 3],
          ['globex', 0],
        ]),
        queued: new Map([['acme', 7]]),
        queuedNow: true,
      }),
    );
    assert.deepEqual(l, { instance: 'orch-1', running: new Map([['acme', 3]]), queued: new Map([['acme', 7]]), queuedNow: true });
    assert.deepEqual(decodeEnded(encodeEnded('orch-2', ['fabc', 'n12'])), { instance: 'orch-2', flowIds: ['fabc', 'n12'] });
  });

  test('anything else is refused naming what is wrong', () => {
    assert.throws(() => decodeLoad(new Uint8Array([0xff, 0xff, 0xff])), /premature|invalid|cannot/i);
    assert.throws(() => decodeLoad(load({ instance: '' })), /instance "" is not an instance id/);
    assert.throws(() => decodeLoad(load({ instance: 'o', running: { 'Not A Tenant': 1 } })), /running: "Not A Tenant" is not a tenant name/);
    assert.throws(() => decodeLoad(load({ instance: 'o', queued: { acme: ADMISSION_LIMITS.count + 1 } })), /queued\.acme: \d+ is not a count/);
    const many = Object.fromEntries(Array.from({ length: ADMISSION_LIMITS.tenants + 1 }, (_, i) => [`t${i}`, 1]));
    assert.throws(() => decodeLoad(load({ instance: 'o', running: many })), /running: 10001 tenants, more than 10000/);
    assert.throws(() => decodeEnded(toBinary(FlowsEndedSchema, create(FlowsEndedSchema, { instance: 'o', flowIds: ['fok', 'f.>'] }))), /"f\.>" is not a flow id/);
    const ids = Array.from({ length: ADMISSION_LIMITS.flowIds + 1 }, (_, i) => `f${i}`);
    assert.throws(() => decodeEnded(toBinary(FlowsEndedSchema, create(FlowsEndedSchema, { instance: 'o', flowIds: ids }))), /more than 5000/);
  });
});
