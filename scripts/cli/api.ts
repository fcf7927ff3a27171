import type { CliSettings } from './config.js';

/** An API error as the server reports it: {"error":{code,message,details}}. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Array<{ path: string; message: string }> = [],
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface SseMessage {
  event: string;
  data: string;
}

/** A thin client of the ingest HTTP API (no SDK: fetch and JSON). */
export class Api {
  constructor(private readonly s: CliSettings) {}

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.s.apiKey ? { authorization: `Bearer ${this.s.apiKey}` } : {}), 'user-agent': 'jetflow-cli', ...extra };
  }

  private async send(method: string, path: string, body?: string, signal?: AbortSignal, extra: Record<string, string> = {}): Promise<Response> {
    try {
      return await fetch(`${this.s.url}${path}`, {
        method,
        headers: this.headers({ ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...extra }),
        body: body ?? null,
        signal: signal ?? null,
      });
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err;
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new ApiError(0, 'unreachable', `cannot reach ${this.s.url} (${cause?.code ?? cause?.message ?? (err as Error).message}); is ingest running? (--url or JETFLOW_URL)`);
    }
  }

  private async fail(res: Response): Promise<never> {
    const text = await res.text().catch(() => '');
    let e: { error?: { code?: string; message?: string; details?: Array<{ path: string; message: string }> } } = {};
    try {
      e = JSON.parse(text) as typeof e;
    } catch {
      // not our error format (a proxy?)
    }
    let message = e.error?.message ?? (text.slice(0, 200) || res.statusText);
    if (res.status === 401)
      message += this.s.apiKey ? ` (key from ${this.s.keySource})` : ' (no API key: pass --api-key, set JETFLOW_API_KEY, or start the local stack so .jetflow/local.json exists)';
    if (res.status === 403) message += ` (key from ${this.s.keySource}; use an operator key: a JETFLOW_API_KEYS entry "<tenant>:operator:<key>")`;
    throw new ApiError(res.status, e.error?.code ?? `http_${res.status}`, message, e.error?.details ?? []);
  }

  /** `headers`: more request headers (an Idempotency-Key). */
  async json<T>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<T> {
    const res = await this.send(method, path, body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body), undefined, headers);
    if (!res.ok) return this.fail(res);
    return (await res.json()) as T;
  }

  /** Server-sent events of a route, until the server ends the stream or `signal` aborts. */
  async *events(path: string, signal?: AbortSignal): AsyncGenerator<SseMessage> {
    const res = await this.send('GET', path, undefined, signal);
    if (!res.ok) await this.fail(res);
    if (!res.body) return;
    const dec = new TextDecoder();
    let buf = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += dec.decode(chunk, { stream: true }).replace(/\r\n/g, '\n');
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = 'message';
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          const c = line.indexOf(':');
          const field = c < 0 ? line : line.slice(0, c);
          const value = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
          if (field === 'event') event = value;
          else if (field === 'data') data.push(value);
        }
        if (data.length) yield { event, data: data.join('\n') };
      }
    }
  }
}
