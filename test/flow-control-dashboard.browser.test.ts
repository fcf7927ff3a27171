/**
 * The dashboard's flow page and flow control, in real headless Chromium against the real services: a task
 * waiting for a signal is listed with the signal's name, Pause and Resume act on the flow (the chip says
 * paused), a received signal is listed as taken, a delayed flow shows when it starts, and a task held back
 * by its concurrency limit is listed with the limit.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { BUCKETS, waitingKey } from '@jetflow/messaging';
import { assertExactlyOnce, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';
import { flowControlSuite } from './flow-control-suite.js';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
// The suite's flows and one with a concurrency limit (on a subject the test pauses, so its task stays dispatched).
const LIMITED = 'jetflow.task.dataset.embeddings';
const flowsFile = join(mkdtempSync(join(tmpdir(), 'jetflow-fc-dash-')), 'flows.json');
writeFileSync(
  flowsFile,
  JSON.stringify([
    ...(JSON.parse(readFileSync(resolve('test/fixtures/signal-flows.json'), 'utf8')) as unknown[]),
    { name: 'limited1', version: 1, deadlineMs: 120_000, tasks: [{ name: 'work', subject: LIMITED, concurrency: { limit: 1, key: 'tenant' } }] },
  ]),
);
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'];

describe('dashboard: signals, pause and delayed starts on the flow page', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  const { submit, view, task, until, waiting, post } = flowControlSuite((s) => ({ j, cb } = s), { flowsFile });
  let browser: Browser;
  let page: Page;
  before(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
    page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    page.setDefaultTimeout(20_000);
    await page.goto(`${j.http}/ui`);
    await page.fill('#api-key', j.apiKey);
    await page.click('button[type=submit]');
    await page.getByRole('heading', { name: 'Flows' }).waitFor();
  });
  after(async () => {
    await browser?.close();
  });
  const open = (id: string) => page.goto(`${j.http}/ui/#/flows/${id}`);

  test('a task waiting for a signal is listed; Pause and Resume act on the flow; the signal it took is listed', async () => {
    const id = await submit('approvals');
    await waiting(id, 'approval');
    await open(id);
    const signals = page.locator('#signals');
    await signals.locator('li[data-waiting-signal="approved"]').waitFor();
    assert.match(await signals.innerText(), /approval[\s\S]*waiting[\s\S]*approved/);

    await page.getByRole('button', { name: 'Pause flow' }).click();
    await page.locator('.page-head .chip', { hasText: 'paused' }).waitFor();
    assert.equal((await view(id)).paused, true);
    assert.equal((await post(`/v1/flows/${id}/signals/approved`, { by: 'dashboard test' })).status, 202);
    await signals.locator('li[data-signal]', { hasText: 'taken' }).waitFor();
    assert.match(await signals.innerText(), /approved[\s\S]*taken[\s\S]*by approval/);

    await page.getByRole('button', { name: 'Resume flow' }).click();
    await assertExactlyOnce(j, cb, [id], { allowed: ['succeeded'], timeoutMs: 30_000 });
    await page.locator('.page-head .chip', { hasText: 'succeeded' }).waitFor();
    assert.equal(await page.locator('.page-head .chip', { hasText: 'paused' }).count(), 0);
  });

  test('a delayed flow shows scheduled and when it starts', async () => {
    const id = await submit('approvals', { delayMs: 600_000 });
    const startAt = await until('scheduled', async () => ((v) => (v.status === 'scheduled' ? v.startAt : undefined))(await view(id)));
    await open(id);
    await page.locator('.page-head .chip', { hasText: 'scheduled' }).waitFor();
    assert.equal(await page.locator('#starts-at').innerText(), await page.evaluate((t) => new Date(t).toLocaleTimeString(), startAt!));
    assert.equal((await post(`/v1/flows/${id}/cancel`, {})).status, 202);
    await assertExactlyOnce(j, cb, [id], { allowed: ['cancelled'], timeoutMs: 30_000 });
  });

  test('a task held back by its concurrency limit is listed with the limit, its key and since when', async () => {
    // Its subject paused: the task stays dispatched. The worker's waiting mark (KV jetflow_limits, as a worker
    // holding it back writes it: test/task-limits shows a real one) is what the view reads.
    assert.equal((await post(`/v1/subjects/${LIMITED}/pause`)).status, 200);
    const id = await submit('limited1');
    await until('dispatched', async () => (task(await view(id), 'work')?.status === 'dispatched' ? true : undefined));
    const kv = await j.nc.jetstream().views.kv(BUCKETS.limits);
    const key = waitingKey(LIMITED, { flowId: id, task: 'work' })!;
    await kv.put(key, JSON.stringify({ kind: 'concurrency', key: 'tenant', limit: 1, since: Date.now(), worker: 'dashboard-test', ttlMs: 60_000 }));
    await open(id);
    const panel = page.locator('#waiting-for-limit');
    await panel.locator('li[data-waiting-limit="work"]').waitFor();
    assert.match(await panel.innerText(), /work[\s\S]*waiting[\s\S]*concurrency limit 1 at once per[\s\S]*tenant/);

    await kv.delete(key);
    assert.equal((await post(`/v1/subjects/${LIMITED}/resume`)).status, 200);
    await assertExactlyOnce(j, cb, [id], { allowed: ['succeeded'], timeoutMs: 30_000 });
    await page.locator('.page-head .chip', { hasText: 'succeeded' }).waitFor();
    assert.equal(await page.locator('#waiting-for-limit').count(), 0);
  });
});
