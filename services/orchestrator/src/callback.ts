import { createHmac } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { fromBinary } from '@bufbuild/protobuf';
import type { JsMsg, KV, NatsConnection } from 'nats';
import { CallbackJobSchema, type CallbackJob } from '@jetflow/proto';
import type { CallbackPolicy, ResolvedAddress, Resolver } from '@jetflow/flows';
import { backoffDelay, deadLetter, publishEvent, type JetStreamPublisher, type KvWriter, encodeUtf8 } from '@jetflow/messaging';
import { flowLogger, type Logger } from '@jetflow/logging';
import { ATTR, SpanKind, SpanStatusCode, annotateActiveSpan, context, inSpan, injectRecord, tracingEnabled } from '@jetflow/telemetry';
import { isStorageError } from '@jetflow/storage';
import type { FlowHistory } from './history.js';

export interface CallbackSenderDeps {
  nc: NatsConnection;
  kv: KV;
  writer: KvWriter;
  pub: JetStreamPublisher;
  policy: CallbackPolicy;
  secrets: ReadonlyMap<string, string>;
  timeoutMs: number;
  maxAttempts: number;
  backoffInitialMs: number;
  backoffMaxMs: number;
  log: Logger;
  onAttempt?: (outcome: 'delivered' | 'retry' | 'dead_lettered') => void;
  /** Records each finished flow in DynamoDB before its callback is sent (JETFLOW_HISTORY=dynamodb). */
  history?: FlowHistory;
  /** How callback hosts are resolved (dns.lookup by default; tests inject one). */
  resolve?: Resolver;
}

/** Jetflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>"> */
export function signBody(secret: string, body: string, t = Math.floor(Date.now() / 1000)): string {
  const v1 = createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
  return `t=${t},v1=${v1}`;
}

export interface CallbackStatus {
  deliveryId: string;
  status: 'delivered' | 'retrying' | 'dead_lettered';
  attempts: number;
  lastStatusCode?: number;
  lastError?: string;
  deliveredAt?: string;
}

const textDecoder = new TextDecoder();

export const callbackKey = (flowId: string) => `${flowId}.callback`;

/**
 * Sends callback jobs. The job was published once per flow (deterministic message id), so this
 * consumer is the only sender; a retry keeps the same Jetflow-Delivery-Id. Retries use delayed naks
 * (durable across restarts), then the dead-letter subject, from where an operator can redrive.
 */
export class CallbackSender {
  private warnedNoSecret = new Set<string>();
  constructor(private readonly d: CallbackSenderDeps) {}

  async handle(m: JsMsg): Promise<void> {
    let job: CallbackJob;
    try {
      job = fromBinary(CallbackJobSchema, m.data);
    } catch (err) {
      await deadLetter(this.d.pub, m, 'callback', { code: 'decode_error', message: `cannot decode callback job: ${(err as Error).message}` });
      m.term();
      return;
    }
    const attempt = m.info.deliveryCount;
    // A child logger costs more than a delivered callback: make it only when something is logged.
    let child: Logger | undefined;
    const log = () => (child ??= flowLogger(this.d.log, { flowId: job.flowId, deliveryId: job.deliveryId, attempt }, m.headers?.get('traceparent')));
    // Already delivered (a crash after the POST and before the ack): do not send again. Only a
    // redelivery can be in that situation, so first attempts skip the read.
    const prev = m.info.redelivered ? await this.d.kv.get(callbackKey(job.flowId)).catch(() => null) : null;
    if (prev?.operation === 'PUT' && prev.value.length) {
      const st = JSON.parse(textDecoder.decode(prev.value)) as CallbackStatus;
      if (st.status === 'delivered') {
        m.ack();
        return;
      }
    }
    const body = textDecoder.decode(job.bodyJson);
    // History first: it is why a job exists for a flow without a callback, and a failed write is
    // retried here (redelivery), off the saga's path. Both writes are conditional: a replay is a no-op.
    if (this.d.history) {
      try {
        await this.d.history.record(body, job.url, m.headers?.get('traceparent') || undefined);
      } catch (err) {
        if (isStorageError(err, 'invalid_argument') || err instanceof SyntaxError) {
          log().error({ err: (err as Error).message }, 'flow cannot be recorded in the history; sending the callback anyway');
        } else {
          const delay = backoffDelay(attempt, this.d.backoffInitialMs, this.d.backoffMaxMs);
          log().warn({ err: (err as Error).message, retryInMs: delay }, 'could not record the flow in the history; retrying before the callback');
          m.nak(delay);
          return;
        }
      }
    }
    if (!job.url) {
      m.ack();
      return;
    }
    let statusCode: number | undefined;
    let error: string | undefined;
    let blocked: string | undefined;
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': 'jetflow-callback/1',
      'jetflow-delivery-id': job.deliveryId,
      'jetflow-attempt': String(attempt),
    };
    const secret = this.d.secrets.get(job.tenant);
    if (secret) headers['jetflow-signature'] = signBody(secret, body);
    else if (!this.warnedNoSecret.has(job.tenant)) {
      this.warnedNoSecret.add(job.tenant);
      log().warn({ tenant: job.tenant }, 'no callback secret for tenant; sending unsigned (set JETFLOW_CALLBACK_SECRETS)');
    }
    const hb = setInterval(() => m.working(), Math.max(1_000, this.d.timeoutMs / 3));
    try {
      const r = await deliver(this.d.policy, job.url, body, headers, this.d.timeoutMs, this.d.resolve);
      if ('blocked' in r) {
        error = blocked = r.blocked;
      } else {
        statusCode = r.statusCode;
        if (tracingEnabled()) annotateActiveSpan({ [ATTR.httpStatus]: statusCode });
        if (statusCode < 200 || statusCode >= 300) error = `HTTP ${statusCode}`;
      }
    } catch (err) {
      error = (err as Error).message; // network, timeout or DNS trouble: retried
    } finally {
      clearInterval(hb);
    }
    const tokens = { flowId: job.flowId, flow: '' };
    if (!error) {
      await this.record(job, { deliveryId: job.deliveryId, status: 'delivered', attempts: attempt, lastStatusCode: statusCode!, deliveredAt: new Date().toISOString() });
      publishEvent(this.d.nc, job.tenant, { ...tokens, type: 'callback.delivered', attempt, message: `HTTP ${statusCode}` });
      m.ack();
      this.d.onAttempt?.('delivered');
      return;
    }
    if (attempt < this.d.maxAttempts && !blocked) {
      const delay = backoffDelay(attempt, this.d.backoffInitialMs, this.d.backoffMaxMs);
      log().warn({ err: error, retryInMs: delay }, 'callback failed; retrying');
      await this.record(job, { deliveryId: job.deliveryId, status: 'retrying', attempts: attempt, ...(statusCode ? { lastStatusCode: statusCode } : {}), lastError: error });
      publishEvent(this.d.nc, job.tenant, { ...tokens, type: 'callback.retrying', attempt, message: error });
      m.nak(delay);
      this.d.onAttempt?.('retry');
      return;
    }
    log().error({ err: error }, 'callback failed for good; dead-lettered');
    await deadLetter(this.d.pub, m, 'callback', { code: blocked ? 'callback_blocked' : 'callback_failed', message: error, flowId: job.flowId, attempts: attempt });
    await this.record(job, { deliveryId: job.deliveryId, status: 'dead_lettered', attempts: attempt, ...(statusCode ? { lastStatusCode: statusCode } : {}), lastError: error });
    publishEvent(this.d.nc, job.tenant, { ...tokens, type: 'callback.failed', attempt, message: error });
    m.term();
    this.d.onAttempt?.('dead_lettered');
  }

  private async record(job: CallbackJob, st: CallbackStatus) {
    try {
      await this.d.writer.put(callbackKey(job.flowId), encodeUtf8(JSON.stringify(st)));
    } catch (err) {
      this.d.log.warn({ err: (err as Error).message, flowId: job.flowId }, 'could not record callback status');
    }
  }
}

// Keep-alive agents: a callback receiver usually gets many deliveries, and a new connection (or the
// global fetch) per POST costs several times the request itself.
const agents = { http: new http.Agent({ keepAlive: true, maxSockets: 64 }), https: new https.Agent({ keepAlive: true, maxSockets: 64 }) };

/**
 * One delivery attempt: resolves the callback host once, checks every address it has against the
 * policy, then POSTs to exactly the checked address. `blocked` when the policy refuses the target;
 * rejects on DNS, network errors and timeouts.
 */
export async function deliver(
  policy: CallbackPolicy,
  url: string,
  body: string,
  headers: Record<string, string>,
  timeoutMs: number,
  resolve?: Resolver,
): Promise<{ blocked: string } | { statusCode: number }> {
  const target = await policy.target(url, resolve).catch((e: Error) => {
    throw new Error(`cannot resolve callback host: ${e.message}`, { cause: e });
  });
  if (!target.ok) return { blocked: target.reason };
  return { statusCode: await (tracingEnabled() ? postTraced : post)(url, body, headers, timeoutMs, target.address) };
}

/**
 * A `lookup` for net.connect that answers the address the policy checked, whatever the name: the
 * connection cannot reach another address than the one checked. The Host header, TLS SNI and the
 * certificate check keep the URL's host name.
 */
export function pinnedLookup(to: ResolvedAddress): LookupFunction {
  return (_host, opts, cb) => {
    if (opts?.all) cb(null, [{ address: to.address, family: to.family }]);
    else cb(null, to.address, to.family);
  };
}

/** A URL for url.full: no user or password, query values redacted (they may hold tokens). */
export function redactedUrl(u: URL): string {
  const q = [...u.searchParams.keys()].map((k) => `${encodeURIComponent(k)}=REDACTED`).join('&');
  return `${u.protocol}//${u.host}${u.pathname}${q ? `?${q}` : ''}`;
}

/**
 * The POST in an HTTP CLIENT span (child of the delivery span) whose W3C traceparent goes in the
 * request: the receiver continues the flow's trace, as it would from any instrumented HTTP client.
 */
function postTraced(url: string, body: string, headers: Record<string, string>, timeoutMs: number, to: ResolvedAddress): Promise<number> {
  const u = new URL(url);
  const scheme = u.protocol.slice(0, -1);
  const attributes = {
    [ATTR.httpMethod]: 'POST',
    [ATTR.urlFull]: redactedUrl(u),
    [ATTR.urlScheme]: scheme,
    [ATTR.serverAddress]: u.hostname.replace(/^\[|\]$/g, ''),
    [ATTR.serverPort]: Number(u.port) || (scheme === 'https' ? 443 : 80),
    // The address the policy checked, the only one the connection may reach.
    [ATTR.peerAddress]: to.address,
  };
  return inSpan('POST', { kind: SpanKind.CLIENT, attributes }, context.active(), async (span) => {
    injectRecord(headers);
    try {
      const status = await post(url, body, headers, timeoutMs, to);
      span.setAttribute(ATTR.httpStatus, status);
      // HTTP client conventions: a 4xx or 5xx answer is an error of the client span.
      if (status >= 400) {
        span.setAttribute(ATTR.errorType, String(status));
        span.setStatus({ code: SpanStatusCode.ERROR, message: `HTTP ${status}` });
      }
      return status;
    } catch (err) {
      span.setAttribute(ATTR.errorType, (err as NodeJS.ErrnoException).code ?? (err as Error).name);
      throw err;
    }
  });
}

/**
 * POSTs the body to `to`, the address checked for the URL's host; resolves with the status code
 * (redirects are not followed: a 3xx is a failed attempt), rejects on network errors and timeouts.
 */
export function post(url: string, body: string, headers: Record<string, string>, timeoutMs: number, to: ResolvedAddress): Promise<number> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : http;
    const req = mod.request(
      u,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': Buffer.byteLength(body) },
        agent: u.protocol === 'https:' ? agents.https : agents.http,
        timeout: timeoutMs,
        lookup: pinnedLookup(to),
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    const timer = setTimeout(() => req.destroy(new Error(`timeout after ${timeoutMs} ms`)), timeoutMs);
    req.on('close', () => clearTimeout(timer));
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}
