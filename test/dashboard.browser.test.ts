import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startCallbackReceiver, startJetflow, sampleSubmission, type CallbackReceiver, type JetflowUnderTest } from '../libs/testing/src/index.js';

// The dashboard in real headless Chromium against the real services.
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'];
const ARTIFACTS = join(process.cwd(), 'test-artifacts');
const JAEGER = 'http://jaeger.example:16686';
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';

// What the functions evaluated in the page use of its globals (the project's lib has no DOM types).
declare const localStorage: { getItem(key: string): string | null };
interface BarElement {
  className: string;
  dataset: { task?: string };
  style: { left: string };
}

describe('dashboard (/ui) in a browser', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  let browser: Browser;
  let page: Page;
  let flowId = '';

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    cb = await startCallbackReceiver({ secret: 'test-callback-secret' });
    [j, browser] = await Promise.all([startJetflow({ env: { JETFLOW_JAEGER_UI_URL: JAEGER } }), chromium.launch({ executablePath: CHROMIUM, args: ARGS })]);
    page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    page.setDefaultTimeout(15_000);
  });
  after(async () => {
    await browser?.close();
    await j?.stop();
    await cb?.close();
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

  test('a submitted flow appears in the live list and turns succeeded', async () => {
    const res = await j.api('/v1/flows', { method: 'POST', json: sampleSubmission(cb.url, { idempotencyKey: 'ui-1' }), headers: { traceparent: `00-${TRACE_ID}-00f067aa0ba902b7-01` } });
    assert.equal(res.status, 202);
    flowId = ((await res.json()) as { flowId: string }).flowId;
    // A few more, so the list looks like a list in the screenshot.
    for (let i = 0; i < 4; i++) await j.api('/v1/flows', { method: 'POST', json: sampleSubmission(cb.url, { metadata: { source: 'ui-test', n: String(i) } }) });
    const row = page.locator(`tr[data-flow-id="${flowId}"]`);
    await row.waitFor();
    await row.locator('.chip', { hasText: 'succeeded' }).waitFor();
    assert.match((await row.textContent()) ?? '', /insights/);
    assert.match((await row.locator('.ptext').textContent()) ?? '', /6\/6/);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-flows.png'), fullPage: true });
  });

  test('the flow page shows a waterfall of 6 task bars and the Jaeger link', async () => {
    await page.click(`tr[data-flow-id="${flowId}"] a[href="#/flows/${flowId}"]`);
    await page.locator('#waterfall .bar.task').nth(5).waitFor();
    const bars = page.locator('#waterfall .bar.task');
    assert.equal(await bars.count(), 6);
    const tasks = await bars.evaluateAll((els: BarElement[]) => els.map((e) => ({ task: e.dataset.task, cls: e.className, left: parseFloat(e.style.left) })));
    assert.deepEqual(tasks.map((t) => t.task).sort(), ['anomaly', 'embeddings', 'features', 'keywords', 'sentiment', 'text']);
    for (const t of tasks) assert.match(t.cls, /succeeded/, `${t.task} bar is succeeded`);
    // Analysts start after every dataset task: their bars sit further right.
    const left = (n: string) => tasks.find((t) => t.task === n)!.left;
    assert.ok(Math.min(left('sentiment'), left('anomaly'), left('keywords')) > Math.max(left('text'), left('features'), left('embeddings')), JSON.stringify(tasks));
    assert.equal(await page.getAttribute('#trace-link', 'href'), `${JAEGER}/trace/${TRACE_ID}`);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-flow.png'), fullPage: true });
  });

  test('a dead letter shows up, and redrive sends it back through its subject', async () => {
    // Not JSON: the orchestrator rejects it and dead-letters it under the tenant in the subject.
    const ack = await j.nc.jetstream().publish('jetflow.ingest.default.insights', new TextEncoder().encode('{"flow": "insights", broken'));
    await page.click('a[data-nav="deadletters"]');
    const row = page.locator('tr[data-seq]', { hasText: 'jetflow.ingest.default.insights' }).first();
    await row.waitFor();
    const seq = Number(await row.getAttribute('data-seq'));
    assert.match((await row.textContent()) ?? '', new RegExp(`n${ack.seq}`), 'the row names the flow id derived from the ingest sequence');
    await row.getByRole('button', { name: 'Details' }).click();
    await page.locator('tr.detail pre', { hasText: 'Jetflow-Dlq-Reason' }).waitFor();
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-deadletters.png'), fullPage: true });

    await row.getByRole('button', { name: 'Redrive' }).click();
    await page.locator(`tr[data-seq="${seq}"]`).waitFor({ state: 'detached' });
    const gone = await j.api(`/v1/deadletters/${seq}`);
    assert.equal(gone.status, 404, 'the dead letter was deleted');
    // Still not JSON, so the orchestrator dead-letters the redriven copy again: proof it went back in.
    await page.locator('tr[data-seq]', { hasText: 'jetflow.ingest.default.insights' }).first().waitFor();
    const again = Number(await page.locator('tr[data-seq]', { hasText: 'jetflow.ingest.default.insights' }).first().getAttribute('data-seq'));
    assert.ok(again > seq, `a new dead letter (${again}) after the redrive of ${seq}`);
    const det = (await (await j.api(`/v1/deadletters/${again}`)).json()) as { headers: Record<string, string[]> };
    assert.deepEqual(det.headers['Jetflow-Redrive-Of'], [String(seq)]);
  });

  test('consumers page lists every consumer with pending counts and a throughput', async () => {
    await page.click('a[data-nav="consumers"]');
    await page.locator('tr[data-consumer="orchestrator-ingest"]').waitFor();
    assert.ok((await page.locator('tr[data-consumer]').count()) >= 16, 'ingest, 8 result partitions, callbacks and 6 task consumers');
    await page.locator('tr[data-consumer="task-dataset-text"] td', { hasText: '/s' }).waitFor();
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-consumers.png'), fullPage: true });
  });
});
