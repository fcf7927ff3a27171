/**
 * The dashboard's flow page and flow control, in real headless Chromium against the real services: a task
 * waiting for a signal is listed with the signal's name, Pause and Resume act on the flow (the chip says
 * paused), a received signal is listed as taken, and a delayed flow shows when it starts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chromium, type Browser, type Page } from 'playwright-core';
import { assertExactlyOnce, type CallbackReceiver, type JetflowUnderTest } from '../libs/testing/src/index.js';
import { flowControlSuite } from './flow-control-suite.js';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'];

describe('dashboard: signals, pause and delayed starts on the flow page', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  const { submit, view, until, waiting, post } = flowControlSuite((s) => ({ j, cb } = s));
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
});
