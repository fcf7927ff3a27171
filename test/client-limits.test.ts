import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as tcpConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { create, toBinary } from '@bufbuild/protobuf';
import { FlowEventSchema, type FlowEvent } from '@jetflow/proto';
import { eventSubject } from '@jetflow/messaging';
import { jetflowPerSuite, sampleSubmission, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';
import { ingestClient } from './grpc-client.js';

// Small bounds so the suite runs in seconds; the defaults are in services/ingest/src/config.ts.
const LIMITS = {
  JETFLOW_HTTP_HEADERS_TIMEOUT_MS: '2000',
  JETFLOW_HTTP_REQUEST_TIMEOUT_MS: '2000',
  JETFLOW_HTTP_IDLE_TIMEOUT_MS: '20000',
  JETFLOW_HTTP_MAX_CONNECTIONS: '240',
  JETFLOW_STREAM_STALL_MS: '1500',
  JETFLOW_WATCH_IDLE_MS: '2500',
  JETFLOW_GRPC_IDLE_MS: '2000',
};

async function until<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Raw {
  socket: Socket;
  data: () => string;
  bytes: () => number;
  closed: () => boolean;
}

/** A raw TCP client of the ingest HTTP port that sends `first` and then whatever the test writes. */
function raw(port: number, first = ''): Promise<Raw> {
  return new Promise((resolve, reject) => {
    let data = '';
    let bytes = 0;
    let closed = false;
    const socket = tcpConnect({ host: '127.0.0.1', port });
    socket.on('data', (d: Buffer) => {
      bytes += d.length;
      if (data.length < 64 * 1024) data += d.toString('latin1');
    });
    socket.on('error', () => undefined);
    socket.on('close', () => (closed = true));
    socket.once('connect', () => {
      if (first) socket.write(first);
      resolve({ socket, data: () => data, bytes: () => bytes, closed: () => closed });
    });
    socket.once('error', reject);
  });
}

const bigEvent = (flowId: string, i: number) =>
  toBinary(
    FlowEventSchema,
    create(FlowEventSchema, { flowId, tenant: 'default', flow: 'insights', type: 'task.succeeded', task: `t${i}`, message: 'x'.repeat(200_000), atMs: BigInt(Date.now()) }),
  );

describe('abusive clients are bounded', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  jetflowPerSuite((s) => ({ j, cb } = s), { jetflow: { aws: false, env: { ...LIMITS, JETFLOW_TASK_MODE: 'noop' } } });
  // Without an orchestrator, submitted flows stay accepted: their streams stay open and quiet.
  before(async () => {
    await j.stack.kill('orchestrator');
  });
  const port = () => Number(new URL(j.http).port);
  const auth = () => `Authorization: Bearer ${j.apiKey}\r\n`;
  const submit = async () => {
    const r = await j.api('/v1/flows', { method: 'POST', json: sampleSubmission(cb.url) });
    assert.equal(r.status, 202);
    return ((await r.json()) as { flowId: string }).flowId;
  };
  const ingestLog = () => readFileSync(join(j.logDir, 'ingest-0.log'), 'utf8');

  test('200 slow-body and 20 slow-header connections are closed by the server while a normal client keeps being served', async () => {
    const head = `POST /v1/flows HTTP/1.1\r\nHost: ingest\r\n${auth()}Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"flow":"ins`;
    const slowBodies = await Promise.all(Array.from({ length: 200 }, () => raw(port(), head)));
    const slowHeaders = await Promise.all(Array.from({ length: 20 }, () => raw(port(), `GET /v1/flows HTTP/1.1\r\nHost: ingest\r\nX-Slow: `)));
    const slow = [...slowBodies, ...slowHeaders];
    // A byte now and then keeps the sockets busy: the bound is on the whole request, not on silence.
    const drip = setInterval(() => {
      for (const s of slowBodies) if (!s.closed()) s.socket.write('i');
    }, 300);
    let served = 0;
    const normal = (async () => {
      while (!slow.every((s) => s.closed())) {
        const r = await j.api('/v1/flows?limit=1');
        assert.equal(r.status, 200, await r.text());
        served++;
        await new Promise((res) => setTimeout(res, 100));
      }
    })();
    try {
      await until('every slow connection closed by the server', () => slow.every((s) => s.closed()), 15_000);
    } finally {
      clearInterval(drip);
    }
    await normal;
    assert.ok(served >= 5, `the normal client was served ${served} times meanwhile`);
    // Node answers a request that did not arrive in time with 408 before closing.
    const answered = slowBodies.filter((s) => s.data().startsWith('HTTP/1.1 408')).length;
    assert.equal(answered, 200, `slow bodies answered 408: ${answered}; first: ${JSON.stringify(slowBodies.find((s) => !s.data().startsWith('HTTP/1.1 408'))?.data())}`);
    // No slow submission was taken as a flow.
    const listed = (await (await j.api('/v1/flows?limit=200')).json()) as { flows: unknown[] };
    assert.equal(listed.flows.length, 0);
  });

  test('connections beyond JETFLOW_HTTP_MAX_CONNECTIONS are closed at once; service resumes when they go', async () => {
    const sockets = await Promise.all(Array.from({ length: 260 }, () => raw(port())));
    try {
      await new Promise((r) => setTimeout(r, 500));
      const closed = sockets.filter((s) => s.closed());
      // 240 allowed, a few held by the test's own HTTP client: 20 or a few more are refused.
      assert.ok(closed.length >= 20 && closed.length <= 40, `closed at once: ${closed.length}`);
      assert.ok(
        closed.every((s) => s.bytes() === 0),
        'refused without an answer',
      );
      assert.match(ingestLog(), /HTTP connection limit reached: new connections are closed \(JETFLOW_HTTP_MAX_CONNECTIONS\)/);
    } finally {
      for (const s of sockets) s.socket.destroy();
    }
    await until('service again', async () => (await j.api('/healthz').catch(() => undefined))?.status === 200, 5_000);
  });

  test('an SSE client that never reads is dropped after the stall bound', async () => {
    const flowId = await submit();
    const c = await raw(port(), `GET /v1/flows/${flowId}/events HTTP/1.1\r\nHost: ingest\r\n${auth()}\r\n`);
    await until('the snapshot', () => c.data().includes('event: snapshot'), 5_000);
    c.socket.pause(); // from here on it reads nothing
    for (let i = 0; i < 40; i++) j.nc.publish(eventSubject('default', flowId), bigEvent(flowId, i));
    await j.nc.flush();
    await until('the drop in the ingest log', () => /event stream dropped: the client is not reading/.test(ingestLog()), 10_000);
    c.socket.resume();
    await until('the connection closed', () => c.closed(), 5_000);
    assert.ok(c.bytes() < 40 * 200_000, `it got ${c.bytes()} bytes, not all 8 MB`);
  });

  test('a stream following one flow ends after the watch idle bound without events (SSE and WatchFlow)', async () => {
    const flowId = await submit();
    const t0 = Date.now();
    const res = await fetch(`${j.http}/v1/flows/${flowId}/events`, { headers: { authorization: `Bearer ${j.apiKey}` } });
    assert.equal(res.status, 200);
    const text = await res.text(); // returns once the server ends the stream
    assert.match(text, /event: snapshot/);
    assert.ok(Date.now() - t0 >= 2_000, 'not before the bound');

    const g = ingestClient(j.grpc, j.apiKey);
    try {
      const got: FlowEvent[] = [];
      const err = await (async () => {
        try {
          for await (const ev of g.watch(flowId)) got.push(ev);
        } catch (e) {
          return e as grpc.ServiceError;
        }
        return undefined;
      })();
      assert.deepEqual(
        got.map((e) => e.type),
        ['snapshot'],
      );
      assert.equal(err?.code, grpc.status.DEADLINE_EXCEEDED, String(err));
      assert.match(err.details, /no event for 2500 ms \(JETFLOW_WATCH_IDLE_MS\); watch again to continue/);
    } finally {
      g.close();
    }
  });

  test('a WatchFlow client that never reads is reset after the stall bound', async () => {
    const flowId = await submit();
    const g = ingestClient(j.grpc, j.apiKey);
    try {
      const call = g.watch(flowId) as unknown as grpc.ClientReadableStream<FlowEvent>;
      let received = 0;
      let error: grpc.ServiceError | undefined;
      let ended = false;
      call.on('data', () => received++);
      call.on('error', (e: grpc.ServiceError) => (error = e));
      call.on('end', () => (ended = true));
      await until('the snapshot', () => received === 1, 5_000);
      call.pause();
      for (let i = 0; i < 60; i++) j.nc.publish(eventSubject('default', flowId), bigEvent(flowId, i));
      await j.nc.flush();
      await until('the reset in the ingest log', () => /WatchFlow stream reset: the client is not reading/.test(ingestLog()), 10_000);
      call.resume();
      await until('the stream to fail', () => error ?? ended, 5_000);
      assert.equal(error?.code, grpc.status.CANCELLED, String(error));
      assert.ok(received < 61, `received ${received} of 61 messages`);
    } finally {
      g.close();
    }
  });

  test('a gRPC connection without calls is closed after JETFLOW_GRPC_IDLE_MS', async () => {
    const client = new grpc.Client(j.grpc, grpc.credentials.createInsecure());
    try {
      await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 5_000, (e) => (e ? reject(e) : resolve())));
      const ch = client.getChannel();
      assert.equal(ch.getConnectivityState(false), grpc.connectivityState.READY);
      await until('the server to close the idle connection', () => ch.getConnectivityState(false) === grpc.connectivityState.IDLE, 8_000);
    } finally {
      client.close();
    }
  });
});
