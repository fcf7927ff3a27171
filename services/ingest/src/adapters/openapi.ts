import type { FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { ErrorCodes } from '@jetflow/errors';
import { COMPONENT_SCHEMAS, ROUTE_DOCS, errorTable, responsesOf } from './openapi-routes.js';

/**
 * OpenAPI 3.1 at /docs/json and Swagger UI at /docs. Registered before any route (the plugin
 * collects routes as they are added); each route's description comes from ROUTE_DOCS, unless the
 * route declares its own schema with a summary.
 */
export async function registerDocs(app: FastifyInstance, o: { version: string }): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Jetflow ingest API',
        version: o.version,
        description: [
          'Submit flows, follow them, and operate Jetflow (listings, dead letters, consumers).',
          'Authenticate with `Authorization: Bearer <api key>`; a key belongs to one tenant and sees only its flows.',
          'Errors are `{"error":{"code","message","details":[{"path","message"}]}}`; 429 and 503 carry `Retry-After`.',
          '',
          errorTable(),
        ].join('\n'),
      },
      components: {
        securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'An API key from JETFLOW_API_KEYS' } },
        schemas: { ErrorCode: { type: 'string', enum: Object.values(ErrorCodes), description: 'Every error code Jetflow answers with (see the table above).' }, ...COMPONENT_SCHEMAS() },
      },
      tags: [
        { name: 'flows', description: 'Submit, read, list and cancel flows' },
        { name: 'events', description: 'Live flow events (server-sent events)' },
        { name: 'dead letters', description: 'Messages that could not be processed, and redrive' },
        { name: 'operations', description: 'Consumers, lag and throughput' },
        { name: 'probes', description: 'Liveness and readiness' },
      ],
    },
    // What @fastify/swagger cannot express from a route schema: a body that may be left out (it marks
    // every body required), and extensions (x-…) on responses, which it drops.
    transformObject: (o) => {
      const doc = 'openapiObject' in o ? o.openapiObject : undefined;
      for (const [key, d] of Object.entries(ROUTE_DOCS)) {
        const [method, url] = key.split(' ') as [string, string];
        const op = (
          doc?.paths?.[url.replace(/:(\w+)/g, '{$1}')] as Record<string, { requestBody?: { required?: boolean }; responses?: Record<string, Record<string, unknown>> }> | undefined
        )?.[method.toLowerCase()];
        if (!op) continue;
        if (d.bodyOptional && op.requestBody) op.requestBody.required = false;
        for (const [status, s] of Object.entries(d.ok)) {
          const r = op.responses?.[status];
          if (r) for (const [k, v] of Object.entries(s)) if (k.startsWith('x-')) r[k] = v;
        }
      }
      return doc as never;
    },
    transform: ({ schema, url, route }) => {
      if ((schema as { hide?: boolean } | undefined)?.hide) return { schema, url };
      if ((schema as { summary?: string } | undefined)?.summary) return { schema, url };
      const method = Array.isArray(route.method) ? route.method[0] : route.method;
      const doc = ROUTE_DOCS[`${method} ${url}`];
      if (!doc) return { schema: { ...(schema ?? {}), summary: `${method} ${url}`, description: 'Undocumented route: add it to ROUTE_DOCS.', tags: ['undocumented'] }, url };
      return {
        schema: {
          operationId: doc.operationId,
          summary: doc.summary,
          ...(doc.description ? { description: doc.description } : {}),
          tags: doc.tags,
          ...(doc.auth === false ? { security: [] } : { security: [{ apiKey: [] }] }),
          ...(doc.params ? { params: doc.params } : {}),
          ...(doc.querystring ? { querystring: doc.querystring } : {}),
          ...(doc.body ? { body: doc.body } : {}),
          response: responsesOf(doc),
        },
        url,
      };
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', deepLinking: true, persistAuthorization: true } });
}
