/**
 * The setup the flow-control suites share (test/pause, test/signals, test/fault-flow-control): a stack with
 * NATS identities and noop workers running the flows of test/fixtures/signal-flows.json (or another file),
 * a callback receiver with the test secret, and the helpers they all use: submit, the flow's view, a task
 * of it, waiting for a condition, waiting for a task to wait for its signal, POST, and the CLI.
 *
 *   let j: JetflowUnderTest;
 *   let cb: CallbackReceiver;
 *   const { submit, view, task, until } = flowControlSuite((s) => ({ j, cb } = s));
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { repoRoot } from '@jetflow/stack';
import { jetflowPerSuite, TEST_SECRET, type CallbackReceiver, type JetflowUnderTest, type StartOptions } from '@jetflow/testing';

export type ViewTask = {
  name: string;
  status: string;
  subject: string | null;
  waitingForSignal?: string;
  dispatchedAt?: string | null;
  error: { code: string; message: string } | null;
};
export type FlowView = {
  flowId: string;
  status: string;
  paused?: boolean;
  startAt?: string | null;
  startedAt?: string | null;
  stages: Array<{ tasks: ViewTask[] }>;
  signals?: Array<{ id: string; name: string; receivedAt: string; task: string | null }>;
  results?: Record<string, unknown>;
};

export interface FlowControlOptions {
  /** The definitions file (JETFLOW_FLOWS_FILE); default test/fixtures/signal-flows.json. */
  flowsFile?: string;
  /** More of the stack's options (its env is added to the suite's; auth replaces `true`). */
  jetflow?: StartOptions;
}

export interface FlowControlSuite {
  /** POST /v1/flows of `flow` (202 asserted, with the receiver's callback URL); the flow id. */
  submit: (flow: string, extra?: Record<string, unknown>) => Promise<string>;
  view: (id: string) => Promise<FlowView>;
  task: (v: FlowView, name: string) => ViewTask | undefined;
  /** Polls `fn` every 100 ms until it returns something other than undefined; fails naming `what` after the timeout. */
  until: <T>(what: string, fn: () => Promise<T | undefined>, timeoutMs?: number) => Promise<T>;
  /** Until task `name` of flow `id` waits for its signal; the task. */
  waiting: (id: string, name: string) => Promise<ViewTask>;
  /** POST with the test key (a JSON body when given). */
  post: (path: string, json?: unknown) => Promise<Response>;
  /** The CLI (dist/scripts/jetflow.js) against the stack with the test key; its stdout (rejects on a non-zero exit). */
  cli: (...args: string[]) => Promise<string>;
}

export function flowControlSuite(onStarted: (s: { j: JetflowUnderTest; cb: CallbackReceiver }) => void, opts: FlowControlOptions = {}): FlowControlSuite {
  let j!: JetflowUnderTest;
  let cb!: CallbackReceiver;
  jetflowPerSuite(
    (s) => {
      ({ j, cb } = s);
      onStarted(s);
    },
    {
      receiver: { secret: TEST_SECRET },
      jetflow: {
        ...opts.jetflow,
        auth: opts.jetflow?.auth ?? true,
        env: { JETFLOW_TASK_MODE: 'noop', JETFLOW_FLOWS_FILE: opts.flowsFile ?? resolve('test/fixtures/signal-flows.json'), ...opts.jetflow?.env },
      },
    },
  );

  const view = async (id: string) => (await (await j.api(`/v1/flows/${id}`)).json()) as FlowView;
  const task = (v: FlowView, name: string) => v.stages.flatMap((s) => s.tasks).find((t) => t.name === name);
  const until = async <T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> => {
    for (const end = Date.now() + timeoutMs; ; await sleep(100)) {
      const v = await fn();
      if (v !== undefined) return v;
      if (Date.now() > end) assert.fail(`${what}: not within ${timeoutMs} ms`);
    }
  };
  return {
    submit: async (flow, extra = {}) => {
      const r = await j.api('/v1/flows', { method: 'POST', json: { flow, input: {}, callbackUrl: cb.url, ...extra } });
      assert.equal(r.status, 202, await r.clone().text());
      return ((await r.json()) as { flowId: string }).flowId;
    },
    view,
    task,
    until,
    waiting: (id, name) => until(`${id} ${name} waiting`, async () => ((t) => (t?.waitingForSignal ? t : undefined))(task(await view(id), name))),
    post: (path, json) => j.api(path, { method: 'POST', ...(json !== undefined ? { json } : {}) }),
    cli: (...args) =>
      new Promise<string>((res, rej) =>
        execFile(
          process.execPath,
          [join(repoRoot(), 'dist', 'scripts', 'jetflow.js'), ...args],
          { env: { PATH: process.env.PATH ?? '', NO_COLOR: '1', JETFLOW_URL: j.http, JETFLOW_API_KEY: j.apiKey }, timeout: 30_000 },
          (err, stdout, stderr) => (err ? rej(new Error(`${err.message}\n${stderr}`)) : res(stdout)),
        ),
      ),
  };
}
