import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startJetflow, sampleSubmission, type JetflowUnderTest } from '@jetflow/testing';

// The dashboard's Schedules page in real headless Chromium against the real services.
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'];

describe('dashboard: Schedules', () => {
  let j: JetflowUnderTest;
  let browser: Browser;
  let page: Page;
  before(async () => {
    [j, browser] = await Promise.all([startJetflow({ env: { JETFLOW_TASK_MODE: 'noop' } }), chromium.launch({ executablePath: CHROMIUM, args: ARGS })]);
    page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    page.setDefaultTimeout(20_000);
  });
  after(async () => {
    await browser?.close();
    await j?.stop();
  });

  test('lists the tenant’s schedules with their state and counts; Pause and Resume act on the schedule', async () => {
    const submission = { flow: 'insights', input: sampleSubmission('http://127.0.0.1:9/').input };
    assert.equal((await j.api('/v1/schedules', { method: 'POST', json: { id: 'nightly', cron: '0 2 * * *', timezone: 'Europe/Berlin', submission } })).status, 201);
    await page.goto(`${j.http}/ui`);
    await page.fill('#api-key', j.apiKey);
    await page.click('button[type=submit]');
    await page.getByRole('heading', { name: 'Flows' }).waitFor();
    await page.click('[data-nav="schedules"]');
    await page.getByRole('heading', { name: 'Schedules' }).waitFor();
    const row = page.locator('tr[data-id="nightly"]');
    await row.waitFor();
    const text = await row.innerText();
    for (const part of ['nightly', '0 2 * * *', 'Europe/Berlin', 'insights', 'allow', 'active']) assert.ok(text.includes(part), `${part} in ${JSON.stringify(text)}`);
    await row.getByRole('button', { name: 'Pause' }).click();
    await row.locator('.chip', { hasText: 'paused' }).waitFor();
    assert.equal(((await (await j.api('/v1/schedules/nightly')).json()) as { paused: boolean }).paused, true);
    await row.getByRole('button', { name: 'Resume' }).click();
    await row.locator('.chip', { hasText: 'active' }).waitFor();
    assert.equal(((await (await j.api('/v1/schedules/nightly')).json()) as { paused: boolean }).paused, false);
  });
});
