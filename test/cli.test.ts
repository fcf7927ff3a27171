import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deriveFlowId } from '@jetflow/flows';
import { repoRoot } from '@jetflow/stack';
import { EXIT } from '../scripts/cli/exit.js';
import { startCallbackReceiver, startJetflow, sampleSubmission, waitForConsumers, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';

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
    // insights v2 is a DAG: the watch shows each level with its tasks (in whatever state the snapshot caught them).
    assert.match(w.stderr, /level-1 .*text .*features .*embeddings/);
    assert.match(w.stderr, /level-2 .*sentiment .*anomaly .*keywords/);

    const g = await cli(['get', flowId]);
    ok(g, 'get');
    const view = JSON.parse(g.stdout) as { status: string; stages: Array<{ tasks: Array<{ status: string }> }> };
    assert.equal(view.status, 'succeeded');
    assert.deepEqual(
      view.stages.flatMap((s) => s.tasks.map((t) => t.status)),
      Array(8).fill('succeeded'),
    );

    const l = await cli(['--json', 'list', '--status', 'succeeded']);
    ok(l, 'list');
    assert.ok((JSON.parse(l.stdout) as { flows: Array<{ flowId: string }> }).flows.some((f) => f.flowId === flowId));
    const table = await cli(['list']);
    assert.match(table.stdout, new RegExp(`succeeded\\s+${flowId}\\s+insights\\s+8/8`));
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
    assert.equal(again.code, EXIT.notFound);
    assert.match(again.stderr, new RegExp(`dead letter ${seq}: not_found`));
  });

  test("submit --delay and --start-at start the flow later (the file's own start replaced); both together, or a malformed one, are usage errors", async () => {
    type View = { status: string; startAt?: string | null };
    const before = Date.now();
    const d = await cli(['submit', '--delay', '1h30m'], { input: JSON.stringify(sampleSubmission(cb.url, { startAt: '2030-01-01T00:00:00Z' })) });
    ok(d, 'submit --delay');
    // GET answers "accepted" until the orchestrator has written the flow's state (scheduled, with its start).
    const scheduled = async (id: string) => {
      for (const end = Date.now() + 20_000; ; await new Promise((r) => setTimeout(r, 200))) {
        const v = JSON.parse((await cli(['get', id])).stdout) as View;
        if (v.status !== 'accepted' || Date.now() > end) return v;
      }
    };
    const delayed = await scheduled(d.stdout.trim());
    const startAt = Date.parse(delayed.startAt ?? '');
    assert.ok(startAt >= before + 90 * 60_000 && startAt <= Date.now() + 90 * 60_000, `startAt ${delayed.startAt} is 1h30m after the submit`);
    assert.equal(delayed.status, 'scheduled');

    const at = new Date(Date.now() + 3_600_000).toISOString();
    const s = await cli(['submit', '--start-at', at], { input: JSON.stringify(sampleSubmission(cb.url, { delayMs: 5 })) });
    ok(s, 'submit --start-at');
    assert.equal((await scheduled(s.stdout.trim())).startAt, at);
    for (const id of [d.stdout.trim(), s.stdout.trim()]) ok(await cli(['cancel', id]), 'cancel the delayed flow');

    const both = await cli(['submit', '--delay', '5s', '--start-at', at], { input: JSON.stringify(sampleSubmission(cb.url)) });
    assert.equal(both.code, EXIT.usage, both.stderr);
    assert.match(both.stderr, /--delay and --start-at exclude each other/);
    const badDelay = await cli(['submit', '--delay', '5 minutes'], { input: JSON.stringify(sampleSubmission(cb.url)) });
    assert.equal(badDelay.code, EXIT.usage);
    assert.match(badDelay.stderr, /--delay: expected milliseconds or a duration .*got "5 minutes"/);
    const badAt = await cli(['submit', '--start-at', '2030-01-31 noon'], { input: JSON.stringify(sampleSubmission(cb.url)) });
    assert.equal(badAt.code, EXIT.usage);
    assert.match(badAt.stderr, /--start-at: expected an RFC 3339 time with an offset/);
  });

  test('consumers prints every consumer', async () => {
    const r = await cli(['consumers']);
    ok(r, 'consumers');
    for (const name of ['orchestrator-ingest-default', 'callback-sender', 'orchestrator-p7', 'task-dataset-text', 'task-analyst-keywords'])
      assert.match(r.stdout, new RegExp(`\\s${name}\\s`));
    assert.match(r.stdout.split('\n')[0] ?? '', /STREAM\s+CONSUMER\s+PENDING\s+ACK PENDING/);
  });

  test('errors name what is wrong, with a distinct exit code per kind', async () => {
    const bad = await cli(['submit'], { input: JSON.stringify({ flow: 'insights', input: { records: [{ id: 'r1' }] } }) });
    assert.equal(bad.code, EXIT.failed, 'refused by the server');
    assert.match(bad.stderr, /invalid_argument/);
    assert.match(bad.stderr, /input\.records\[0\]\.text: /);

    const notJson = await cli(['submit'], { input: '{nope' });
    assert.equal(notJson.code, EXIT.usage);
    assert.match(notJson.stderr, /not valid JSON/);
    const noFile = await cli(['submit', join(cwd, 'no-such-file.json')]);
    assert.equal(noFile.code, EXIT.usage);
    assert.match(noFile.stderr, /cannot read .*no-such-file\.json: ENOENT/);

    const unknown = await cli(['lsit']);
    assert.equal(unknown.code, EXIT.usage, unknown.stderr);
    assert.match(unknown.stderr, /unknown command 'lsit'/);
    const badOption = await cli(['list', '--bogus']);
    assert.equal(badOption.code, EXIT.usage);
    assert.match(badOption.stderr, /unknown option '--bogus'/);
    const badLimit = await cli(['list', '--limit', '0']);
    assert.equal(badLimit.code, EXIT.usage);
    assert.match(badLimit.stderr, /--limit: expected a positive integer, got "0"/);
    const missingArg = await cli(['get']);
    assert.equal(missingArg.code, EXIT.usage);
    assert.match(missingArg.stderr, /missing required argument 'flowId'/);

    const key = await cli(['list', '--limit', '1'], { env: { JETFLOW_API_KEY: 'wrong-key-0123456789abcdef' } });
    assert.equal(key.code, EXIT.auth);
    assert.match(key.stderr, /unauthenticated: unknown API key \(key from JETFLOW_API_KEY\)/);

    const down = await cli(['--url', 'http://127.0.0.1:1', 'list']);
    assert.equal(down.code, EXIT.unreachable);
    assert.match(down.stderr, /cannot reach http:\/\/127\.0\.0\.1:1/);

    const missing = await cli(['get', 'f0000000000000000000000000']);
    assert.equal(missing.code, EXIT.notFound);
    assert.match(missing.stderr, /not_found: flow f0+ not found/);

    // A server error: a receiver that answers 500 in the API's error format.
    const broken = createServer((_req, res) => res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'internal', message: 'boom', details: [] } })));
    await new Promise<void>((r) => broken.listen(0, '127.0.0.1', r));
    try {
      const r = await cli(['--url', `http://127.0.0.1:${(broken.address() as AddressInfo).port}`, 'get', 'f0000000000000000000000000']);
      assert.equal(r.code, EXIT.server);
      assert.match(r.stderr, /internal: boom/);
    } finally {
      broken.close();
    }
    // The codes are distinct.
    assert.equal(new Set(Object.values(EXIT)).size, Object.keys(EXIT).length);
  });

  test('--version prints the package version; help texts name only files that exist', async () => {
    const v = await cli(['--version']);
    ok(v, '--version');
    const pkg = JSON.parse(readFileSync(join(repoRoot(), 'package.json'), 'utf8')) as { version: string };
    assert.equal(v.stdout.trim(), pkg.version);
    assert.equal((await cli(['-V'])).stdout.trim(), pkg.version);

    const top = await cli(['--help']);
    ok(top, '--help');
    assert.match(top.stdout, /Exit codes: 0 ok;.*3 usage; 4 no or bad API key; 5 not found; 6 server error/);
    const commands = ['submit', 'get', 'watch', 'cancel', 'list', 'dlq', 'dlq list', 'dlq show', 'dlq redrive', 'route', 'consumers', 'start'];
    const texts = [top.stdout];
    for (const c of commands) {
      const h = await cli([...c.split(' '), '--help']);
      ok(h, `${c} --help`);
      texts.push(h.stdout);
    }
    // Every file a help text names (x/y.ts, README, NAME.md) is in the repository; .jetflow/ is written at run time.
    const named = new Set(texts.flatMap((t) => [...t.matchAll(/(?:[\w.-]+\/)*[\w-]+\.(?:md|ts|js|json|ya?ml)\b|\bREADME\b/g)].map((m) => m[0])));
    assert.ok(named.size > 0);
    for (const f of named) {
      if (f.startsWith('.jetflow/') || f === 'local.json' || f === 'flow.json') continue;
      const path = f === 'README' ? 'README.md' : f;
      assert.ok(existsSync(join(repoRoot(), path)), `help names ${f}, which does not exist`);
    }
  });

  test('list follows the cursor: a filter whose first pages hold none of the flows still finds them', async () => {
    // One partial (no dataset workers, short deadline) and one cancelled flow, then more succeeded
    // flows than the history listing reads for one page of a two-status filter (5 queries of --limit).
    await j.stack.kill('dataset-generator');
    let partial: string;
    let cancelled: string;
    try {
      const p = await cli(['submit', '--watch', '-'], { input: JSON.stringify(sampleSubmission(cb.url, { deadlineMs: 500 })) });
      assert.equal(p.code, EXIT.partial, p.stderr);
      partial = p.stdout.trim();
      const s = await cli(['submit'], { input: JSON.stringify(sampleSubmission(cb.url, { deadlineMs: 30_000 })) });
      ok(s, 'submit');
      cancelled = s.stdout.trim();
      for (let i = 0; ; i++) {
        const r = await cli(['cancel', cancelled]);
        if (r.code === 0) break;
        // 503 while the saga has not started it yet
        assert.ok(r.code === EXIT.server && i < 50, r.stderr);
        await new Promise((res) => setTimeout(res, 100));
      }
      await cb.waitForFlows([partial, cancelled]);
    } finally {
      j.stack.restart('dataset-generator');
      await waitForConsumers(j.nc);
    }
    const newer: string[] = [];
    for (let i = 0; i < 30; i++) {
      const r = await j.api('/v1/flows', { method: 'POST', json: sampleSubmission(cb.url) });
      assert.equal(r.status, 202);
      newer.push(((await r.json()) as { flowId: string }).flowId);
    }
    await cb.waitForFlows(newer);
    // The condition of the bug: the API's first page of this filter is empty but has a cursor.
    const first = (await (await j.api('/v1/flows?status=partial,cancelled&limit=5')).json()) as { flows: unknown[]; nextCursor: string | null };
    assert.equal(first.flows.length, 0, 'the first page is empty (newer succeeded flows fill the pages it reads)');
    assert.ok(first.nextCursor);

    const t = await cli(['list', '--status', 'partial,cancelled', '--limit', '5']);
    ok(t, 'list');
    assert.doesNotMatch(t.stdout, /no flows/);
    assert.match(t.stdout, new RegExp(`partial\\s+${partial}\\s+insights`));
    assert.match(t.stdout, new RegExp(`cancelled\\s+${cancelled}\\s+insights`));

    const js = await cli(['--json', 'list', '--status', 'partial,cancelled', '--limit', '1']);
    ok(js, 'list --json');
    const page = JSON.parse(js.stdout) as { flows: Array<{ flowId: string; status: string }>; nextCursor: string | null };
    assert.equal(page.flows.length, 1, 'stops at --limit');
    assert.ok(['partial', 'cancelled'].includes(page.flows[0]!.status));
    assert.ok(page.nextCursor, 'and says where to go on');
    const rest = await cli(['--json', 'list', '--status', 'partial,cancelled', '--limit', '100', '--cursor', page.nextCursor]);
    ok(rest, 'list --cursor');
    const ids = [page.flows[0]!.flowId, ...(JSON.parse(rest.stdout) as { flows: Array<{ flowId: string }> }).flows.map((f) => f.flowId)];
    for (const id of [partial, cancelled]) assert.ok(ids.includes(id), `${id} on one of the two listings`);
    assert.equal(new Set(ids).size, ids.length, 'no flow twice');
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
