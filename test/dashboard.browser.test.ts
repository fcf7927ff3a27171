import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startCallbackReceiver, startJetflow, sampleSubmission, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';
import { encodeFlowEvent, eventSubject } from '@jetflow/messaging';

// The dashboard in real headless Chromium against the real services, at a desktop (1440 px) and a phone (420 px) width.
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'];
const ARTIFACTS = join(process.cwd(), 'test-artifacts');
const JAEGER = 'http://jaeger.example:16686';
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const WIDE = { width: 1440, height: 900 };
const NARROW = { width: 420, height: 860 };

// What the functions evaluated in the page use of its globals (the project's lib has no DOM types).
declare const localStorage: { getItem(key: string): string | null };
declare const document: {
  documentElement: { scrollWidth: number; clientWidth: number };
  querySelectorAll(s: string): ArrayLike<{ dataset: Record<string, string | undefined>; querySelector(s: string): { textContent: string | null } | null }>;
};
declare const window: Record<string, unknown>;
declare function setInterval(fn: () => void, ms: number): number;
interface BarElement {
  className: string;
  dataset: { task?: string };
  style: { left: string };
}

describe('dashboard (/ui) in a browser', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  let down: CallbackReceiver;
  let browser: Browser;
  let page: Page;
  let flowId = '';
  let deadCallbackFlow = '';
  const shot = (name: string) => page.screenshot({ path: join(ARTIFACTS, `dashboard-${name}-${page.viewportSize()?.width}.png`), fullPage: true });
  const submit = async (body: Record<string, unknown>) => {
    const r = await j.api('/v1/flows', { method: 'POST', json: body });
    assert.equal(r.status, 202, await r.clone().text());
    return ((await r.json()) as { flowId: string }).flowId;
  };

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    cb = await startCallbackReceiver({ secret: 'test-callback-secret' });
    // A receiver that is down: its callbacks are retried, then dead-lettered (two attempts, 100 ms apart).
    down = await startCallbackReceiver();
    down.failWith = 500;
    [j, browser] = await Promise.all([
      startJetflow({
        env: {
          JETFLOW_JAEGER_UI_URL: JAEGER,
          JETFLOW_FLOWS_FILE: resolve('test/fixtures/chaos-flows.json'),
          JETFLOW_TEST_PLUGINS: '1',
          JETFLOW_CALLBACK_MAX_ATTEMPTS: '2',
          JETFLOW_CALLBACK_BACKOFF_MS: '100',
        },
        serviceEnv: { analyst: { JETFLOW_TASK_SUBJECTS: 'jetflow.task.analyst.>,jetflow.task.test.>' } },
      }),
      chromium.launch({ executablePath: CHROMIUM, args: ARGS }),
    ]);
    page = await browser.newPage({ viewport: WIDE });
    page.setDefaultTimeout(20_000);
  });
  after(async () => {
    await browser?.close();
    await j?.stop();
    await cb?.close();
    await down?.close();
  });

  test('asks for the API key, refuses a wrong one, keeps the right one', async () => {
    await page.goto(`${j.http}/ui`);
    await page.fill('#api-key', 'not-a-valid-key-0000000');
    await page.click('button[type=submit]');
    await page.getByRole('alert').filter({ hasText: 'refused' }).waitFor();
    await page.fill('#api-key', j.apiKey);
    await page.click('button[type=submit]');
    await page.getByRole('heading', { name: 'Flows' }).waitFor();
    await page.locator('#live.on').waitFor();
    assert.equal(await page.evaluate(() => localStorage.getItem('jetflow.apiKey')), j.apiKey);
  });

  test('flows turn succeeded with every task done, never while tasks still run; the callback has its own state', async () => {
    // Every 20 ms, any row that says "succeeded" must show all its tasks done.
    await page.evaluate(() => {
      const seen: string[] = [];
      window.__succeededEarly = seen;
      setInterval(() => {
        for (const tr of Array.from(document.querySelectorAll('tr[data-flow-id]'))) {
          const status = tr.querySelector('.chip')?.textContent;
          const p = tr.querySelector('.ptext')?.textContent ?? '';
          const [done, total] = p.split('/');
          if (status === 'succeeded' && done !== total) seen.push(`${tr.dataset.flowId} ${p}`);
        }
      }, 20);
    });
    const res = await j.api('/v1/flows', { method: 'POST', json: sampleSubmission(cb.url, { idempotencyKey: 'ui-1' }), headers: { traceparent: `00-${TRACE_ID}-00f067aa0ba902b7-01` } });
    assert.equal(res.status, 202);
    flowId = ((await res.json()) as { flowId: string }).flowId;
    for (let i = 0; i < 4; i++) await submit(sampleSubmission(cb.url, { metadata: { source: 'ui-test', n: String(i) } }));
    deadCallbackFlow = await submit(sampleSubmission(down.url, { idempotencyKey: 'ui-dead-callback' }));

    const row = page.locator(`tr[data-flow-id="${flowId}"]`);
    await row.locator('.chip', { hasText: /^succeeded$/ }).waitFor();
    assert.match((await row.textContent()) ?? '', /insights/);
    // insights v2: 8 tasks (prepare and score mapped).
    assert.match((await row.locator('.ptext').textContent()) ?? '', /8\/8/);
    await row.locator('[data-callback="delivered"]', { hasText: 'callback delivered' }).waitFor();

    // The flow succeeded; its callback did not: the row says both.
    const dead = page.locator(`tr[data-flow-id="${deadCallbackFlow}"]`);
    await dead.locator('[data-callback="dead_lettered"]', { hasText: 'callback dead-lettered' }).waitFor();
    assert.equal(await dead.locator('.chip').first().textContent(), 'succeeded');
    const view = (await (await j.api(`/v1/flows/${deadCallbackFlow}`)).json()) as { status: string; callback: { status: string; attempts: number } };
    assert.deepEqual([view.status, view.callback.status, view.callback.attempts], ['succeeded', 'dead_lettered', 2]);
    // An event alone never ends a row: here one says a running flow succeeded (a transition's event can
    // run ahead of the row's task counts, and anyone who may publish on the subject can send one).
    const slow = await submit({ flow: 'cancellable', input: { chaos: { slowMs: 8_000 } } });
    await page.locator(`tr[data-flow-id="${slow}"] .chip`, { hasText: 'running' }).waitFor();
    j.nc.publish(eventSubject('default', slow), encodeFlowEvent({ flowId: slow, tenant: 'default', flow: 'cancellable', type: 'flow.completed', status: 'succeeded', atMs: Date.now() }));
    await page.waitForTimeout(2_500); // past the row reload the event triggers
    assert.equal(await page.locator(`tr[data-flow-id="${slow}"] .chip`).first().textContent(), 'running');
    assert.deepEqual(await page.evaluate(() => window.__succeededEarly), [], 'no row said succeeded while tasks were running');
    await j.api(`/v1/flows/${slow}/cancel`, { method: 'POST', json: { reason: 'test done' } });

    // The chart counts the finished flows.
    await page.locator('#chart svg rect.tput').first().waitFor();
    assert.match((await page.locator('#chart .panel-head').textContent()) ?? '', /6 finished flows/);
    await shot('flows');
  });

  test('search by metadata and by idempotency key', async () => {
    await page.fill('#search-meta', 'n=2');
    await page.click('#flow-search button[type=submit]');
    await page.waitForFunction(() => document.querySelectorAll('tr[data-flow-id]').length === 1);
    const only = (await page.locator('tr[data-flow-id]').first().getAttribute('data-flow-id'))!;
    const v = (await (await j.api(`/v1/flows/${only}`)).json()) as { metadata: Record<string, string> };
    assert.equal(v.metadata.n, '2');
    await page.fill('#search-meta', '');
    await page.fill('#search-key', 'ui-1');
    await page.click('#flow-search button[type=submit]');
    await page.locator(`tr[data-flow-id="${flowId}"]`).waitFor();
    assert.equal(await page.locator('tr[data-flow-id]').count(), 1);
    // The API names a malformed search parameter.
    const bad = await j.api('/v1/flows?metadata=novalue');
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: { details: Array<{ path: string }> } }).error.details[0]!.path, 'metadata');
    await page.goto(`${j.http}/ui/#/flows`);
  });

  test('the flow page shows a waterfall of 8 task bars (insights v2), the Jaeger link and the callback', async () => {
    await page.goto(`${j.http}/ui/#/flows/${flowId}`);
    await page.locator('#waterfall .bar.task').nth(7).waitFor();
    const bars = page.locator('#waterfall .bar.task');
    assert.equal(await bars.count(), 8);
    const tasks = await bars.evaluateAll((els: BarElement[]) => els.map((e) => ({ task: e.dataset.task, cls: e.className, left: parseFloat(e.style.left) })));
    assert.deepEqual(tasks.map((t) => t.task).sort(), ['anomaly', 'embeddings', 'features', 'keywords', 'prepare', 'score', 'sentiment', 'text']);
    for (const t of tasks) assert.match(t.cls, /succeeded/, `${t.task} bar is succeeded`);
    // Analysts start after every dataset task: their bars sit further right.
    const left = (n: string) => tasks.find((t) => t.task === n)!.left;
    assert.ok(Math.min(left('sentiment'), left('anomaly'), left('keywords')) > Math.max(left('text'), left('features'), left('embeddings')), JSON.stringify(tasks));
    assert.equal(await page.getAttribute('#trace-link', 'href'), `${JAEGER}/trace/${TRACE_ID}`);
    await page.locator('.fact', { hasText: 'Callback' }).locator('[data-callback="delivered"]').waitFor();
    await shot('flow');

    await page.goto(`${j.http}/ui/#/flows/${deadCallbackFlow}`);
    await page.locator('.page-head [data-callback="dead_lettered"]').waitFor();
    await page.locator('#attempts [data-task="callback"] li').nth(1).waitFor();
    assert.deepEqual(await page.locator('#attempts [data-task="callback"] li .chip').allTextContents(), ['retrying', 'dead-lettered']);
  });

  test('a task that failed twice shows each attempt with its error', async () => {
    const id = await submit({ flow: 'failfast', input: {}, callbackUrl: cb.url });
    await cb.waitForFlows([id]);
    await page.goto(`${j.http}/ui/#/flows/${id}`);
    const doomed = page.locator('#attempts [data-task="doomed"]');
    await doomed.locator('li').nth(1).waitFor();
    const items = await doomed
      .locator('li')
      .evaluateAll((els: Array<{ dataset: { attempt?: string }; textContent: string | null }>) => els.map((e) => ({ attempt: e.dataset.attempt, text: e.textContent ?? '' })));
    assert.deepEqual(
      items.map((i) => i.attempt),
      ['1', '2'],
    );
    assert.match(items[0]!.text, /retried.*always fails \(attempt 1\)/);
    assert.match(items[1]!.text, /final.*always fails \(attempt 2\)/);
    await shot('attempts');
  });

  test('bulk cancel: select running flows, confirm, and each is cancelled', async () => {
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push(await submit({ flow: 'cancellable', input: { chaos: { slowMs: 8_000 } }, metadata: { batch: 'bulk' } }));
    await page.goto(`${j.http}/ui/#/flows?meta=batch%3Dbulk`);
    for (const id of ids) await page.locator(`tr[data-flow-id="${id}"] .chip`, { hasText: 'running' }).waitFor();
    for (const id of ids) await page.locator(`tr[data-flow-id="${id}"] td.sel input`).check();
    const button = page.locator('#bulk-cancel');
    assert.equal(await button.textContent(), 'Cancel selected (3)');
    await button.click();
    assert.equal(await button.textContent(), 'Confirm: cancel 3 flows');
    await button.click();
    await page.locator('.toast', { hasText: 'Cancelling 3 of 3 flows' }).waitFor();
    for (const id of ids) await page.locator(`tr[data-flow-id="${id}"] .chip`, { hasText: 'cancelled' }).first().waitFor();
    for (const id of ids) assert.equal(((await (await j.api(`/v1/flows/${id}`)).json()) as { status: string }).status, 'cancelled');
  });

  test('dead letters: details do not stretch the table, Redrive stays in view at 420 px, single and bulk redrive', async () => {
    // Not JSON: the orchestrator rejects them and dead-letters them under the tenant in the subject.
    const acks = [];
    for (let i = 0; i < 3; i++) acks.push(await j.nc.jetstream().publish('jetflow.ingest.default.insights', new TextEncoder().encode(`{"flow": "insights", broken ${i} ${'x'.repeat(400)}`)));
    await page.goto(`${j.http}/ui/#/deadletters`);
    const rows = page.locator('tr[data-seq]', { hasText: 'jetflow.ingest.default.insights' });
    await rows.nth(2).waitFor();
    const row = rows.first();
    const seq = Number(await row.getAttribute('data-seq'));
    const originals = await rows.evaluateAll((els: Array<{ dataset: { seq?: string } }>) => els.map((e) => Number(e.dataset.seq)));
    const two = originals.filter((s) => s !== seq).slice(0, 2);
    assert.match((await row.textContent()) ?? '', /n\d+/, 'the row names the flow id derived from the ingest sequence');

    const overflow = () => page.locator('.panel:has(table.dlq)').evaluate((p: { scrollWidth: number; clientWidth: number }) => p.scrollWidth - p.clientWidth);
    const before = await overflow();
    await row.getByRole('button', { name: 'Details' }).click();
    await page.locator('tr.detail pre', { hasText: 'Jetflow-Dlq-Reason' }).waitFor();
    await shot('deadletters');
    assert.ok((await overflow()) <= before, `details widened the table (overflow ${before} → ${await overflow()} px)`);
    assert.equal(before, 0, 'at 1440 px the table fits its panel');

    await page.setViewportSize(NARROW);
    await page.locator('tr.detail pre').first().waitFor();
    for (let i = 0; i < 3; i++) {
      const box = (await rows.nth(i).getByRole('button', { name: 'Redrive' }).boundingBox())!;
      assert.ok(box.x >= 0 && box.x + box.width <= NARROW.width, `Redrive of row ${i} in the viewport: ${JSON.stringify(box)}`);
    }
    await shot('deadletters');
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= document.documentElement.clientWidth), 'the page does not scroll sideways at 420 px');
    assert.ok((await overflow()) <= 0, `at 420 px the table fits its panel, details open (overflow ${await overflow()} px)`);
    const reason = (await row.locator('.reason-inline').boundingBox())!;
    assert.ok(reason.width > 0 && reason.x + reason.width <= NARROW.width, `the reason is shown within the row at 420 px: ${JSON.stringify(reason)}`);
    for (const pre of await page.locator('tr.detail pre').all()) {
      const b = (await pre.boundingBox())!;
      assert.ok(b.x + b.width <= NARROW.width, `details within the viewport: ${JSON.stringify(b)}`);
    }

    await row.getByRole('button', { name: 'Redrive' }).click();
    await page.locator(`tr[data-seq="${seq}"]`).waitFor({ state: 'detached' });
    assert.equal((await j.api(`/v1/deadletters/${seq}`)).status, 404, 'the dead letter was deleted');
    const det = async (s: number) => (await (await j.api(`/v1/deadletters/${s}`)).json()) as { headers: Record<string, string[]> };
    // Still not JSON, so the orchestrator dead-letters the redriven copy again: proof it went back in.
    await page.waitForFunction((s) => Array.from(document.querySelectorAll('tr[data-seq]')).some((r) => Number(r.dataset.seq) > s), seq);

    // Bulk: the two other originals.
    assert.equal(two.length, 2);
    for (const s of two) await page.locator(`tr[data-seq="${s}"] td.sel input`).check();
    const bulk = page.locator('#bulk-redrive');
    assert.equal(await bulk.textContent(), 'Redrive selected (2)');
    await bulk.click();
    await bulk.click();
    await page.locator('.toast', { hasText: 'Redriven 2 of 2' }).waitFor();
    for (const s of two) {
      await page.locator(`tr[data-seq="${s}"]`).waitFor({ state: 'detached' });
      assert.equal((await j.api(`/v1/deadletters/${s}`)).status, 404, `dead letter ${s} was deleted`);
    }
    // Each comes back as a new dead letter naming the one it was redriven from.
    const redriven = new Set<string>();
    const until = Date.now() + 15_000;
    while (redriven.size < 3 && Date.now() < until) {
      const list = (await (await j.api('/v1/deadletters?source=ingest&limit=100')).json()) as { deadLetters: Array<{ seq: number }> };
      for (const d of list.deadLetters) for (const of of (await det(d.seq)).headers['Jetflow-Redrive-Of'] ?? []) redriven.add(of);
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.deepEqual(
      [...redriven].map(Number).sort((a, b) => a - b),
      [seq, ...two].sort((a, b) => a - b),
    );
    await page.setViewportSize(WIDE);
  });

  test('all matching the filter: a dry-run count to confirm, then every matching flow is cancelled and every matching dead letter redriven', async () => {
    const ids = [];
    for (let i = 0; i < 4; i++) ids.push(await submit({ flow: 'cancellable', input: { chaos: { slowMs: 8_000 } }, metadata: { batch: 'matching' } }));
    const keep = await submit({ flow: 'cancellable', input: { chaos: { slowMs: 8_000 } }, metadata: { batch: 'kept' } });
    const statusOf = async (id: string) => ((await (await j.api(`/v1/flows/${id}`)).json()) as { status: string }).status;
    await page.goto(`${j.http}/ui/#/flows?meta=batch%3Dmatching`);
    for (const id of ids) await page.locator(`tr[data-flow-id="${id}"] .chip`, { hasText: 'running' }).waitFor();
    const cancel = page.locator('#cancel-matching');
    assert.equal(await cancel.textContent(), 'Cancel all matching…');
    await cancel.click();
    await page.locator('#cancel-matching', { hasText: 'Confirm: cancel 4 matching flows' }).waitFor();
    for (const id of [...ids, keep]) assert.equal(await statusOf(id), 'running', 'the count changed nothing');
    await cancel.click();
    await page.locator('.toast', { hasText: 'Cancelling 4' }).waitFor();
    for (const id of ids) await page.locator(`tr[data-flow-id="${id}"] .chip`, { hasText: 'cancelled' }).first().waitFor();
    for (const id of ids) assert.equal(await statusOf(id), 'cancelled');
    assert.notEqual(await statusOf(keep), 'cancelled', 'a flow the filter does not select is not cancelled');
    // A filter of ended flows has nothing to cancel: no button.
    await page.goto(`${j.http}/ui/#/flows?status=succeeded`);
    await page.locator('#cancel-matching').waitFor({ state: 'hidden' });

    // Dead letters of one source: the count the server gives is the one to confirm; each is redriven once.
    const bad = new TextEncoder().encode('{"flow": "insights", not json');
    for (let i = 0; i < 2; i++) await j.nc.jetstream().publish('jetflow.ingest.default.insights', bad);
    await page.goto(`${j.http}/ui/#/deadletters?source=ingest`);
    await page.locator('tr[data-seq]').nth(1).waitFor();
    const dry = (await (await j.api('/v1/deadletters:redrive', { method: 'POST', json: { filter: { source: 'ingest' }, dryRun: true } })).json()) as { matched: number; seqs: number[] };
    assert.ok(dry.matched >= 2, JSON.stringify(dry));
    const redrive = page.locator('#redrive-matching');
    await redrive.click();
    await page.locator('#redrive-matching', { hasText: `Confirm: redrive ${dry.matched} matching dead letters` }).waitFor();
    for (const s of dry.seqs) assert.equal((await j.api(`/v1/deadletters/${s}`)).status, 200, 'the count changed nothing');
    await redrive.click();
    await page.locator('.toast', { hasText: `Redriven ${dry.matched}` }).waitFor();
    for (const s of dry.seqs) assert.equal((await j.api(`/v1/deadletters/${s}`)).status, 404, `dead letter ${s} was redriven (and deleted)`);
  });

  test('workers view: each task subject with its pulling workers, and every consumer, live', async () => {
    await page.goto(`${j.http}/ui/#/consumers`);
    await page.getByRole('heading', { name: 'Consumers and their pulling workers' }).waitFor();
    const text = page.locator('#workers tr[data-worker-subject="jetflow.task.dataset.text"]');
    await text.waitFor();
    // The dataset generator keeps a pull open on its subject while idle.
    await page.waitForFunction(
      () => Number(Array.from(document.querySelectorAll('#workers tr[data-worker-subject="jetflow.task.dataset.text"]'))[0]?.querySelector('td:nth-child(2)')?.textContent) >= 1,
    );
    await page.locator('tr[data-consumer^="orchestrator-ingest-default"]').first().waitFor();
    assert.ok((await page.locator('tr[data-consumer]').count()) >= 16, 'ingest, 8 result partitions, callbacks and the task consumers');
    await page.locator('tr[data-consumer="task-dataset-text"] td', { hasText: '/s' }).waitFor();
    // The worker registry: a live dataset generator with the subjects it serves, and the subject served by one instance.
    await page.locator('#registry tr[data-status="live"] [data-subject="jetflow.task.dataset.text"]').waitFor();
    await page.locator('#registry-subjects tr[data-registry-subject="jetflow.task.dataset.text"] td:nth-child(2) strong', { hasText: '1' }).waitFor();
    await shot('consumers');
  });

  test('a running flow whose task no live worker serves names it on its page', async () => {
    const def = {
      name: 'nobody-serves',
      version: 1,
      deadlineMs: 20_000,
      stages: [
        {
          name: 'only',
          onFailure: 'fail_flow',
          tasks: [{ name: 'orphan', subject: 'jetflow.task.custom.nobody', softLimitMs: 1_000, hardLimitMs: 2_000, maxAttempts: 1, backoff: { initialMs: 100, maxMs: 200, multiplier: 2 } }],
        },
      ],
    };
    const put = await j.api('/v1/flow-definitions/nobody-serves', { method: 'PUT', json: def });
    assert.ok([200, 201].includes(put.status), await put.clone().text());
    const id = await submit({ flow: 'nobody-serves', input: {} });
    await page.goto(`${j.http}/ui/#/flows/${id}`);
    await page.locator('#waiting-for li[data-waiting-task="orphan"]', { hasText: 'jetflow.task.custom.nobody' }).waitFor();
    await shot('waiting-for-worker');
    await j.api(`/v1/flows/${id}/cancel`, { method: 'POST', json: {} });
  });

  test('at 420 px every page fits the width and keeps its actions in view', async () => {
    await page.setViewportSize(NARROW);
    for (const [hash, name, ready] of [
      ['#/flows', 'flows', 'tr[data-flow-id]'],
      [`#/flows/${deadCallbackFlow}`, 'flow', '#waterfall .bar.task'],
      ['#/consumers', 'consumers', '#workers tr[data-worker-subject]'],
    ] as const) {
      await page.goto(`${j.http}/ui/${hash}`);
      await page.locator(ready).first().waitFor();
      await page.waitForTimeout(300);
      assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= document.documentElement.clientWidth), `${name}: no sideways scroll at 420 px`);
      await shot(name);
    }
    await page.setViewportSize(WIDE);
  });
});
