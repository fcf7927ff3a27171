import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deriveFlowId } from '../libs/flows/src/index.js';
import { repoRoot } from '../libs/stack/src/index.js';
import { startCallbackReceiver, startJetflow, sampleSubmission, waitForConsumers, type CallbackReceiver, type JetflowUnderTest } from '../libs/testing/src/index.js';

// The jetflow CLI as a real child process (dist/scripts/jetflow.js) against a running stack.
const CLI = join(repoRoot(), 'dist', 'scripts', 'jetflow.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('jetflow CLI', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  const cwd = mkdtempSync(join(tmpdir(), 'jetflow-cli-'));

  function cli(args: string[], o: { input?: string; env?: Record<string, string> } = {}): Promise<Run> {
    return new Promise((resolve, reject) => {
      const env: Record<string, string> = { PATH: process.env.PATH ?? '', NO_COLOR: '1', JETFLOW_URL: j.http, JETFLOW_API_KEY: j.apiKey, ...(o.env ?? {}) };
      const p = spawn(process.execPath, [CLI, ...args], { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const t = setTimeout(() => p.kill('SIGKILL'), 30_000);
      p.on('error', reject);
      p.on('close', (code) => {
        clearTimeout(t);
        resolve({ code, stdout, stderr });
      });
      p.stdin.end(o.input ?? '');
    });
  }
  const ok = (r: Run, what: string) => assert.equal(r.code, 0, `${what} exited ${r.code}: ${r.stderr}`);

  before(async () => {
    cb = await startCallbackReceiver({ secret: 'test-callback-secret' });
    j = await startJetflow({ env: { JETFLOW_CALLBACK_MAX_ATTEMPTS: '2', JETFLOW_CALLBACK_BACKOFF_MS: '50', JETFLOW_CALLBACK_BACKOFF_MAX_MS: '100' } });
  });
  after(async () => {
    await j?.stop();
    await cb?.close();
  });

  test('submit from stdin prints the flow id; watch follows it to succeeded; get prints it', async () => {
    const sub = await cli(['submit'], { input: JSON.stringify(sampleSubmission(cb.url, { idempotencyKey: 'cli-1' })) });
    ok(sub, 'submit');
    const flowId = sub.stdout.trim();
    assert.equal(flowId, deriveFlowId('default', 'cli-1'));

    const w = await cli(['watch', flowId]);
    ok(w, 'watch');
    assert.match(w.stderr, new RegExp(`${flowId} succeeded in \\d`));
    assert.match(w.stderr, /datasets/);

    const g = await cli(['get', flowId]);
    ok(g, 'get');
    const view = JSON.parse(g.stdout) as { status: string; stages: Array<{ tasks: Array<{ status: string }> }> };
    assert.equal(view.status, 'succeeded');
    assert.deepEqual(view.stages.flatMap((s) => s.tasks.map((t) => t.status)), Array(6).fill('succeeded'));

    const l = await cli(['--json', 'list', '--status', 'succeeded']);
    ok(l, 'list');
    assert.ok((JSON.parse(l.stdout) as { flows: Array<{ flowId: string }> }).flows.some((f) => f.flowId === flowId));
    const table = await cli(['list']);
    assert.match(table.stdout, new RegExp(`succeeded\\s+${flowId}\\s+insights\\s+6/6`));
  });

  test('watch exits 2 when a flow ends partial and 1 when it is cancelled', async () => {
    // No dataset workers: tasks wait, so the deadline passes and a cancel finds the flow running.
    await j.stack.kill('dataset-generator');
    try {
      const partial = await cli(['submit', '--watch', '-'], { input: JSON.stringify(sampleSubmission(cb.url, { deadlineMs: 700 })) });
      assert.equal(partial.code, 2, partial.stderr);
      assert.match(partial.stderr, / partial in .*deadline/);
      assert.match(partial.stderr, /timeout/, 'names the timed-out tasks');

      const file = join(cwd, 'flow.json');
      writeFileSync(file, JSON.stringify(sampleSubmission(cb.url, { deadlineMs: 30_000 })));
      const sub = await cli(['submit', file]);
      ok(sub, 'submit from a file');
      const flowId = sub.stdout.trim();
      const watching = cli(['watch', flowId]);
      await new Promise((r) => setTimeout(r, 300));
      const cancel = await cli(['cancel', flowId, '--reason', 'cli test']);
      ok(cancel, 'cancel');
      assert.equal(cancel.stdout.trim(), `${flowId} cancelling`);
      const w = await watching;
      assert.equal(w.code, 1, w.stderr);
      assert.match(w.stderr, new RegExp(`${flowId} cancelled`));
    } finally {
      j.stack.restart('dataset-generator');
      await waitForConsumers(j.nc);
    }
  });

  test('dlq list shows a dead-lettered callback; dlq redrive delivers it; a second redrive is not found', async () => {
    cb.failWith = 503;
    let flowId = '';
    let seq = 0;
    try {
      const sub = await cli(['submit'], { input: JSON.stringify(sampleSubmission(cb.url, { idempotencyKey: 'cli-dlq' })) });
      ok(sub, 'submit');
      flowId = sub.stdout.trim();
      const end = Date.now() + 20_000;
      while (!seq) {
        const r = await cli(['--json', 'dlq', 'list', '--source', 'callback']);
        ok(r, 'dlq list --json');
        seq = (JSON.parse(r.stdout) as { deadLetters: Array<{ seq: number; flowId: string }> }).deadLetters.find((d) => d.flowId === flowId)?.seq ?? 0;
        if (!seq && Date.now() > end) throw new Error('no dead letter for the callback');
        if (!seq) await new Promise((res) => setTimeout(res, 200));
      }
    } finally {
      cb.failWith = undefined;
    }
    const list = await cli(['dlq', 'list']);
    ok(list, 'dlq list');
    assert.match(list.stdout, new RegExp(`^\\s*${seq}\\s+\\S.*callback\\s+callback_failed\\s+jetflow\\.callback\\.default\\s+2\\s+${flowId}\\s+HTTP 503`, 'm'));

    const rd = await cli(['dlq', 'redrive', String(seq)]);
    ok(rd, 'dlq redrive');
    assert.match(rd.stdout, new RegExp(`redriven ${seq} → jetflow\\.callback\\.default \\(JETFLOW_CALLBACKS #\\d+\\)`));
    await cb.waitForFlows([flowId]);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(cb.byFlow(flowId).length, 1, 'delivered once');
    assert.equal(cb.byFlow(flowId)[0]!.headers['jetflow-delivery-id'], `dlv_${flowId}`);

    const again = await cli(['dlq', 'redrive', String(seq)]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, new RegExp(`dead letter ${seq}: not_found`));
  });

  test('consumers prints every consumer', async () => {
    const r = await cli(['consumers']);
    ok(r, 'consumers');
    for (const name of ['orchestrator-ingest', 'callback-sender', 'orchestrator-p7', 'task-dataset-text', 'task-analyst-keywords']) assert.match(r.stdout, new RegExp(`\\s${name}\\s`));
    assert.match(r.stdout.split('\n')[0] ?? '', /STREAM\s+CONSUMER\s+PENDING\s+ACK PENDING/);
  });

  test('errors name what is wrong, with a non-zero exit', async () => {
    const bad = await cli(['submit'], { input: JSON.stringify({ flow: 'insights', input: { records: [{ id: 'r1' }] } }) });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /invalid_argument/);
    assert.match(bad.stderr, /input\.records\[0\]\.text: /);

    const notJson = await cli(['submit'], { input: '{nope' });
    assert.equal(notJson.code, 1);
    assert.match(notJson.stderr, /not valid JSON/);

    const key = await cli(['list', '--limit', '1'], { env: { JETFLOW_API_KEY: 'wrong-key-0123456789abcdef' } });
    assert.equal(key.code, 1);
    assert.match(key.stderr, /unauthenticated: unknown API key \(key from JETFLOW_API_KEY\)/);

    const down = await cli(['--url', 'http://127.0.0.1:1', 'list']);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /cannot reach http:\/\/127\.0\.0\.1:1/);

    const missing = await cli(['get', 'f0000000000000000000000000']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /not_found: flow f0+ not found/);
  });

  test('the key and URL come from the local stack file when not given', async () => {
    const file = join(cwd, 'local.json');
    writeFileSync(file, JSON.stringify({ apiKey: j.apiKey, url: j.http, grpc: j.grpc, callbackSecret: j.secret }));
    const r = await cli(['--json', 'list', '--limit', '1'], { env: { JETFLOW_URL: '', JETFLOW_API_KEY: '', JETFLOW_LOCAL_STACK_FILE: file } });
    ok(r, 'list with the local file');
    assert.ok(Array.isArray((JSON.parse(r.stdout) as { flows: unknown[] }).flows));
    const flag = await cli(['--api-key', 'nope-0123456789abcdef', 'list'], { env: { JETFLOW_LOCAL_STACK_FILE: file } });
    assert.match(flag.stderr, /key from --api-key/, 'the flag wins over the environment and the file');
  });
});
