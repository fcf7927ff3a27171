import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { KV, NatsConnection } from 'nats';
import { JetflowError, ErrorCodes } from '@jetflow/errors';
import type { FlowRegistry } from '@jetflow/flows';
import { BUCKETS, isCasConflict, openKv } from '@jetflow/messaging';
import { ScheduleHandlers, type ScheduleStore } from '../handlers/schedules.js';
import type { Authenticator } from './auth.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** KV jetflow_schedules as a ScheduleStore (opened on first use; reads from the leader: they feed a compare-and-set). */
export class KvScheduleStore implements ScheduleStore {
  private kv: Promise<KV> | undefined;
  constructor(private readonly nc: NatsConnection) {}

  private open(): Promise<KV> {
    this.kv ??= openKv(this.nc, BUCKETS.schedules, { leader: true }).catch((err: unknown) => {
      this.kv = undefined;
      throw err;
    });
    return this.kv;
  }

  async get(key: string) {
    const e = await unavailableIfDown(async () => (await this.open()).get(key));
    return e && e.operation === 'PUT' && e.value.length ? { value: dec.decode(e.value), revision: e.revision } : undefined;
  }
  async create(key: string, value: string) {
    return unavailableIfDown(async () => (await this.open()).create(key, enc.encode(value)));
  }
  async update(key: string, value: string, revision: number) {
    return unavailableIfDown(async () => (await this.open()).update(key, enc.encode(value), revision));
  }
  async delete(key: string) {
    await unavailableIfDown(async () => (await this.open()).delete(key));
  }
  async keys(prefix: string) {
    return unavailableIfDown(async () => {
      const out: string[] = [];
      for await (const k of await (await this.open()).keys(`${prefix}.>`)) out.push(k);
      return out;
    });
  }
}

async function unavailableIfDown<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    // A compare-and-set conflict is the caller's to judge (the key exists, or changed).
    if (err instanceof JetflowError || isCasConflict(err)) throw err;
    throw new JetflowError(ErrorCodes.UNAVAILABLE, `the schedules bucket is unavailable: ${(err as Error).message}`, { retryAfterMs: 1_000, cause: err });
  }
}

export interface ScheduleRoutesDeps {
  auth: Authenticator;
  nc: NatsConnection;
  registry: FlowRegistry;
  checkCallbackUrl?: (url: string) => string | undefined;
}

/** POST/GET /v1/schedules, GET/DELETE /v1/schedules/{id}, POST /v1/schedules/{id}/pause|resume; every view is the key's tenant's. */
export function registerScheduleRoutes(app: FastifyInstance, d: ScheduleRoutesDeps): ScheduleHandlers {
  const h = new ScheduleHandlers({
    store: new KvScheduleStore(d.nc),
    registry: d.registry,
    ...(d.checkCallbackUrl ? { checkCallbackUrl: d.checkCallbackUrl } : {}),
    isConflict: isCasConflict,
  });
  const authenticate = async (req: FastifyRequest) => {
    const p = d.auth.principalOf(req.headers.authorization);
    req.tenant = p.tenant;
    req.operator = p.operator;
  };
  app.post('/v1/schedules', { preHandler: authenticate }, async (req, reply) => {
    const r = await h.create(req.tenant, req.body);
    return reply.code(r.created ? 201 : 200).send(r.schedule);
  });
  app.get('/v1/schedules', { preHandler: authenticate }, async (req) => h.list(req.tenant));
  app.get<{ Params: { id: string } }>('/v1/schedules/:id', { preHandler: authenticate }, async (req) => h.get(req.tenant, req.params.id));
  app.delete<{ Params: { id: string } }>('/v1/schedules/:id', { preHandler: authenticate }, async (req) => h.delete(req.tenant, req.params.id));
  app.post<{ Params: { id: string } }>('/v1/schedules/:id/pause', { preHandler: authenticate }, async (req) => h.setPaused(req.tenant, req.params.id, true));
  app.post<{ Params: { id: string } }>('/v1/schedules/:id/resume', { preHandler: authenticate }, async (req) => h.setPaused(req.tenant, req.params.id, false));
  return h;
}
