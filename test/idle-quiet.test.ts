import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startBenchNats, startBenchServices } from '../bench/lib/stack.js';

/** Seconds the stack is left alone before counting (its start is not idleness), and seconds counted. */
const SETTLE_S = 4;
const WINDOW_S = 10;

/** `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>` → `<stream>/<consumer>`; other API subjects → their kind. */
function apiKind(subject: string): string {
  const t = subject.split('.');
  if (t[2] === 'CONSUMER' && t[3] === 'MSG' && t[4] === 'NEXT') return `pull ${t[5]}/${t[6]}`;
  if (t[2] === 'CONSUMER' && t[3] === 'CREATE') return `consumer create ${t[4]}`;
  return t.slice(2, 4).join('.');
}

// What an idle stack asks of nats-server, counted (not timed): every JetStream API request of the services
// over a quiet window, seen by a subscriber of $JS.API.> in their account. An idle stack used to make an
// ordered consumer on the lease bucket every second (the member listing), list the ingest consumers every
// second and pull each tenant's ingest consumers every 2 s: a third of a core with the history on
// (docs/PERFORMANCE.md, "Idle"). No count here depends on the machine's speed.
test('an idle stack (history on) makes no consumers, lists nothing and pulls its ingest lanes rarely', { timeout: 180_000 }, async () => {
  const nats = await startBenchNats({ auth: true });
  let svc: Awaited<ReturnType<typeof startBenchServices>> | undefined;
  try {
    svc = await startBenchServices(nats, { mode: 'noop', history: 'on', logLevel: 'warn', logDir: undefined, cpuProfDir: undefined, log: () => undefined });
    await sleep(SETTLE_S * 1000);
    const counts = new Map<string, number>();
    const sub = nats.nc.subscribe('$JS.API.>', { callback: (_e, m) => counts.set(apiKind(m.subject), (counts.get(apiKind(m.subject)) ?? 0) + 1) });
    await sleep(WINDOW_S * 1000);
    sub.unsubscribe();
    const seen = [...counts].map(([k, n]) => `${k}: ${n}`).join(', ');
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    const pulls = (prefix: string) => [...counts].filter(([k]) => k.startsWith(`pull ${prefix}`));

    // Still alive: the task consumers' fetch loops (2 s) and the lanes do pull, so the subscription saw them.
    assert.ok(pulls('JETFLOW_TASKS/').length >= 6, `every task consumer pulled in ${WINDOW_S} s (${seen})`);
    // The lease members come from one long-lived watch, not from a listing (an ordered consumer) per tick.
    assert.deepEqual(
      [...counts].filter(([k]) => k.startsWith('consumer create')),
      [],
      `no consumer is made on an idle stack (${seen})`,
    );
    // An empty ingest stream needs no listing of its consumers (one per tenant and family) to know nothing is queued.
    assert.equal(counts.get('CONSUMER.LIST') ?? 0, 0, `no consumer listing on an idle stack (${seen})`);
    // Each tenant lane's pull request lasts 10 s: at most two of them start in any 10 s (it was five).
    const lanes = pulls('JETFLOW_INGEST/');
    assert.ok(lanes.length >= 1, `the ingest lanes are pulled (${seen})`);
    for (const [k, n] of lanes) assert.ok(n <= 2, `${k}: ${n} pull requests in ${WINDOW_S} s (${seen})`);
    // What is left: the task fetches (one per subject every 2 s) and one stream info per second for the
    // admission counts.
    const taskPulls = pulls('JETFLOW_TASKS/').reduce((a, [, n]) => a + n, 0);
    // Each subject's priority bands (libs/messaging bands.ts): the normal band's open request every 2 s, the
    // high and low bands' every 6 s, so an idle subject asks 5 times per 6 s where it asked 3 (no no-wait probes).
    const byBand = (re: RegExp) => pulls('JETFLOW_TASKS/').filter(([k]) => re.test(k));
    const normal = byBand(/\/task-/).reduce((a, [, n]) => a + n, 0);
    const bands = byBand(/\/task(high|low)-/).reduce((a, [, n]) => a + n, 0);
    console.log(
      `# idle ${WINDOW_S} s: ${taskPulls} task pulls (normal bands ${normal}, high and low bands ${bands}, ${byBand(/\/task-/).length} subjects), ${total - taskPulls} other JetStream API requests`,
    );
    assert.ok(bands <= normal, `the high and low bands together pull no more often than the normal ones (${bands} vs ${normal}; ${seen})`);
    assert.ok(total - taskPulls <= 1.5 * WINDOW_S, `${total - taskPulls} JetStream API requests besides the task fetches in ${WINDOW_S} s (${seen})`);
  } finally {
    await svc?.stop();
    await nats.close();
  }
});
