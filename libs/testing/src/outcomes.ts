import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CallbackReceiver } from './callback-receiver.js';
import type { JetflowUnderTest } from './harness.js';

export interface Outcomes {
  /** Accepted flows by final status. */
  statuses: Record<string, number>;
  /** Accepted callbacks for flows nobody submitted. */
  strays: number;
  /** Deliveries beyond the first (HTTP at-least-once: same delivery id, same body). */
  repeats: number;
}

/**
 * What the fault tests assert: every accepted flow ends exactly once — an accepted callback, one
 * delivery id across any retries, every delivery the same report, and a terminal state (as GET
 * /v1/flows/{id} shows it) that matches the callback. Returns the counts for the test's diagnostics;
 * the caller asserts on strays and statuses.
 */
export async function assertExactlyOnce(j: JetflowUnderTest, cb: CallbackReceiver, accepted: string[], o: { timeoutMs?: number; allowed?: string[] } = {}): Promise<Outcomes> {
  try {
    await cb.waitForFlows(accepted, o.timeoutMs ?? 90_000);
  } catch (err) {
    // Say which flows never ended and where each one stands.
    const missing = accepted.filter((id) => cb.byFlow(id).length === 0);
    const views = await Promise.all(missing.slice(0, 10).map(async (id) => `${id}: ${await describeFlow(j, id)}`));
    throw new Error(`${(err as Error).message}; ${missing.length} without a callback:\n  ${views.join('\n  ')}`, { cause: err });
  }
  await sleep(3_000); // room for any duplicate to show up
  const allowed = o.allowed ?? ['succeeded', 'partial'];
  const statuses: Record<string, number> = {};
  let repeats = 0;
  for (const id of accepted) {
    const got = cb.byFlow(id);
    assert.ok(got.length >= 1, `flow ${id}: no callback`);
    // HTTP delivery is at-least-once: a sender killed after the receiver's 200 and before its ack
    // sends again. Such a repeat must be the same delivery (same id, same report) so the receiver
    // can drop it; a second *different* ending would be a real double completion.
    const ids = new Set(cb.deliveries.filter((d) => d.body.flowId === id).map((d) => d.headers['jetflow-delivery-id']));
    assert.deepEqual([...ids], [`dlv_${id}`], `flow ${id}: one delivery id across retries`);
    assert.equal(new Set(got.map((d) => d.raw)).size, 1, `flow ${id}: every delivery carries the same report`);
    repeats += got.length - 1;
    const status = await flowStatus(j, id);
    assert.ok(allowed.includes(status), `flow ${id} ended ${status}`);
    assert.equal(status, got[0]!.body.status, `flow ${id}: the state says what the callback said`);
    statuses[status] = (statuses[status] ?? 0) + 1;
  }
  const known = new Set(accepted);
  const strays = cb.accepted.filter((d) => !known.has(d.body.flowId));
  return { statuses, strays: strays.length, repeats };
}

/** GET /v1/flows/{id}'s status, retried while the API answers 5xx (a broker failing over). */
async function flowStatus(j: JetflowUnderTest, id: string): Promise<string> {
  for (let i = 0; ; i++) {
    const r = await j.api(`/v1/flows/${id}`).catch((err: Error) => err);
    if (!(r instanceof Error) && r.status < 500) {
      assert.equal(r.status, 200, `GET /v1/flows/${id}`);
      return ((await r.json()) as { status: string }).status;
    }
    if (!(r instanceof Error)) await r.body?.cancel();
    if (i >= 50) assert.fail(`GET /v1/flows/${id}: ${r instanceof Error ? r.message : r.status}`);
    await sleep(200);
  }
}

/** One line on where a flow stands: status, stage and each task's status and attempts. */
async function describeFlow(j: JetflowUnderTest, id: string): Promise<string> {
  try {
    const r = await j.api(`/v1/flows/${id}`);
    if (r.status !== 200) return `GET ${r.status} ${await r.text()}`;
    const v = (await r.json()) as {
      status: string;
      endReason: string | null;
      callback: unknown;
      stages: Array<{ name: string; status: string; tasks: Array<{ name: string; status: string; attempts: number }> }>;
    };
    const stages = v.stages.map((s) => `${s.name}:${s.status}[${s.tasks.map((t) => `${t.name}=${t.status}/${t.attempts}`).join(' ')}]`).join(' ');
    return `${v.status}${v.endReason ? ` (${v.endReason})` : ''} ${stages} callback=${JSON.stringify(v.callback)}`;
  } catch (err) {
    return `GET failed: ${(err as Error).message}`;
  }
}
