import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetflowPerSuite, sampleSubmission, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';

// A flow's deadline is a control message on its result partition, handed back with a delay until the
// deadline. The result stream is a work queue (a message stays until acked), so its message count says
// whether finished flows' timers are still waiting to come back: they used to, for the whole deadline
// (here two minutes), each then a delivery and an ack for nothing.
describe('a finished flow leaves no deadline timer behind', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  jetflowPerSuite((s) => ({ j, cb } = s));

  test('flows that succeed long before their deadline take their timers out of the results stream', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await j.api('/v1/flows', { method: 'POST', json: sampleSubmission(cb.url, { idempotencyKey: `timer-${i}`, deadlineMs: 120_000 }) });
      assert.equal(r.status, 202);
      ids.push(((await r.json()) as { flowId: string }).flowId);
    }
    await cb.waitForFlows(ids);
    for (const id of ids) assert.equal(cb.byFlow(id).length, 1, `one callback for ${id}`);
    const jsm = await j.nc.jetstreamManager();
    // The ack follows the terminal write at once; allow the round trip (far inside the two-minute deadline).
    let left = -1;
    for (let i = 0; i < 50; i++) {
      left = (await jsm.streams.info('JETFLOW_RESULTS')).state.messages;
      if (left === 0) break;
      await sleep(200);
    }
    assert.equal(left, 0, 'no timer (or result) of a finished flow is left in JETFLOW_RESULTS');
    for (const c of await jsm.consumers.list('JETFLOW_RESULTS').next()) assert.equal(c.num_ack_pending, 0, `${c.name} holds nothing delayed`);
  });
});
