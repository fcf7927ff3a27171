import type { FastifyInstance, FastifyRequest } from 'fastify';
import { JetflowError, ErrorCodes } from '@jetflow/errors';
import {
  DefinitionError,
  DefinitionStoreError,
  definitionHash,
  isFlowName,
  validateDefinitions,
  type DefinitionStore,
  type FlowDef,
  type FlowRegistry,
  type LiveDefinitions,
  type StoredVersion,
} from '@jetflow/flows';
import { requireOperator, type Authenticator } from './auth.js';

export interface DefinitionRoutesDeps {
  auth: Authenticator;
  store: DefinitionStore;
  /** This replica's definitions: a registration is used here at once, elsewhere through the store's watch. */
  registry: FlowRegistry;
  live: LiveDefinitions;
}

/** The path of a DefinitionError in the body (`stages.0.tasks.1.subject`, `stages[0].tasks[1]`), for the error's details. */
export function definitionErrorPath(err: DefinitionError, name: string): string {
  let w = err.where.replace(/^#\d+(?: \([^)]*\))?(?: at )?/, '');
  if (w.startsWith(`${name}.`)) w = w.slice(name.length + 1);
  w = w.replace(/ \([^)]*\)$/, '');
  return w || '(root)';
}

/**
 * Flow definitions registered while running: PUT stores a new version in KV jetflow_definitions (operator
 * keys only), GET lists names and versions. New submissions use a name's newest version; flows in flight
 * keep the version they started with.
 */
export function registerDefinitionRoutes(app: FastifyInstance, d: DefinitionRoutesDeps): void {
  const authenticate = async (req: FastifyRequest) => {
    const p = d.auth.principalOf(req.headers.authorization);
    req.tenant = p.tenant;
    req.operator = p.operator;
  };
  const nameOf = (name: string) => {
    if (!isFlowName(name))
      throw new JetflowError(ErrorCodes.INVALID_ARGUMENT, `flow name "${name.slice(0, 60)}" is invalid`, {
        details: [{ path: 'name', message: 'lowercase letters, digits, _ or -, starting with a letter, at most 41' }],
      });
    return name;
  };
  const storeError = (err: unknown): never => {
    if (err instanceof DefinitionStoreError) throw new JetflowError(ErrorCodes.INTERNAL, `the definitions store holds a corrupt entry: ${err.message}`);
    throw err;
  };
  const versionView = (v: StoredVersion) => ({ version: v.version, hash: v.hash, storedAt: v.storedAt, source: v.source });

  app.put<{ Params: { name: string } }>('/v1/flow-definitions/:name', { preHandler: authenticate }, async (req, reply) => {
    requireOperator(req, 'PUT /v1/flow-definitions/{name}');
    const name = nameOf(req.params.name);
    const body = req.body;
    if (!body || typeof body !== 'object' || Array.isArray(body))
      throw new JetflowError(ErrorCodes.INVALID_ARGUMENT, 'the body must be one flow definition (a JSON object)', { details: [{ path: '(root)', message: 'expected an object' }] });
    const raw = { ...(body as Record<string, unknown>) };
    if (raw.name === undefined) raw.name = name;
    if (raw.name !== name)
      throw new JetflowError(ErrorCodes.INVALID_ARGUMENT, `name: the body names ${JSON.stringify(raw.name)} but the path names "${name}"`, {
        details: [{ path: 'name', message: `must be "${name}" (the path's) or absent` }],
      });
    let def: FlowDef;
    try {
      [def] = validateDefinitions([raw]) as [FlowDef];
    } catch (err) {
      if (!(err instanceof DefinitionError)) throw err;
      const path = definitionErrorPath(err, name);
      throw new JetflowError(ErrorCodes.INVALID_ARGUMENT, `${path}: ${err.message.replace(/^flow definition [^:]*: /, '')}`, { details: [{ path, message: err.message }] });
    }
    const plan = await d.store.register(def, 'api').catch(storeError);
    if (plan.outcome === 'conflict') throw new JetflowError(ErrorCodes.CONFLICT, plan.message, { details: [{ path: 'version', message: plan.message }] });
    // This replica uses it at once; the others (and the orchestrators) follow the store's watch.
    if (plan.outcome === 'created') await d.live.refresh(name);
    return reply.code(plan.outcome === 'created' ? 201 : 200).send({ name, ...versionView(plan.entry), outcome: plan.outcome });
  });

  app.get('/v1/flow-definitions', { preHandler: authenticate }, async (req) => {
    requireOperator(req, 'GET /v1/flow-definitions');
    const all = await d.store.list().catch(storeError);
    return { flows: all.map((i) => ({ name: i.name, newest: i.versions[0]!.version, versions: i.versions.map(versionView) })) };
  });

  app.get<{ Params: { name: string } }>('/v1/flow-definitions/:name', { preHandler: authenticate }, async (req) => {
    requireOperator(req, 'GET /v1/flow-definitions/{name}');
    const name = nameOf(req.params.name);
    const index = await d.store.index(name).catch(storeError);
    const newest = index?.versions[0];
    if (!index || !newest) throw new JetflowError(ErrorCodes.NOT_FOUND, `flow definition "${name}" is not stored`);
    const got = await d.store.version(name, newest.version).catch(storeError);
    if (!got) throw new JetflowError(ErrorCodes.NOT_FOUND, `flow definition "${name}" v${newest.version} is not stored`);
    return { name, ...versionView(got.entry), definition: got.def, versions: index.versions.map(versionView) };
  });

  app.get<{ Params: { name: string; version: string } }>('/v1/flow-definitions/:name/versions/:version', { preHandler: authenticate }, async (req) => {
    requireOperator(req, 'GET /v1/flow-definitions/{name}/versions/{version}');
    const name = nameOf(req.params.name);
    const version = /^[1-9][0-9]{0,8}$/.test(req.params.version) ? Number(req.params.version) : NaN;
    if (!Number.isInteger(version))
      throw new JetflowError(ErrorCodes.INVALID_ARGUMENT, `version "${req.params.version.slice(0, 20)}" is not a version number`, {
        details: [{ path: 'version', message: 'a positive integer' }],
      });
    const got = await d.store.version(name, version).catch(storeError);
    if (!got) throw new JetflowError(ErrorCodes.NOT_FOUND, `flow definition "${name}" v${version} is not stored`);
    if (definitionHash(got.def) !== got.entry.hash) throw new JetflowError(ErrorCodes.INTERNAL, `${name} v${version}: stored copy does not match its hash`);
    return { name, ...versionView(got.entry), definition: got.def };
  });
}
