import type { FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { ErrorCodes } from '../../../../libs/errors/src/index.js';
import { ROUTE_DOCS, errorTable, responsesOf } from './openapi-routes.js';

/**
 * OpenAPI 3 at /docs/json and Swagger UI at /docs. Registered before any route (the plugin
 * collects routes as they are added); each route's description comes from ROUTE_DOCS, unless the
 * route declares its own schema with a summary.
 */
export async function registerDocs(app: FastifyInstance, o: { version: string }): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
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
        schemas: { ErrorCode: { type: 'string', enum: Object.values(ErrorCodes), description: 'Every error code Jetflow answers with (see the table above).' } },
      },
      tags: [
        { name: 'flows', description: 'Submit, read, list and cancel flows' },
        { name: 'events', description: 'Live flow events (server-sent events)' },
        { name: 'dead letters', description: 'Messages that could not be processed, and redrive' },
        { name: 'operations', description: 'Consumers, lag and throughput' },
        { name: 'probes', description: 'Liveness and readiness' },
      ],
    },
    transform: ({ schema, url, route }) => {
      if ((schema as { hide?: boolean } | undefined)?.hide) return { schema, url };
      if ((schema as { summary?: string } | undefined)?.summary) return { schema, url };
      const method = Array.isArray(route.method) ? route.method[0] : route.method;
      const doc = ROUTE_DOCS[`${method} ${url}`];
      if (!doc) return { schema: { ...(schema ?? {}), summary: `${method} ${url}`, description: 'Undocumented route: add it to ROUTE_DOCS.', tags: ['undocumented'] }, url };
      return {
        schema: {
          summary: doc.summary,
          ...(doc.description ? { description: doc.description } : {}),
          tags: doc.tags,
          ...(doc.auth === false ? { security: [] } : { security: [{ apiKey: [] }] }),
          ...(doc.params ? { params: doc.params } : {}),
          ...(doc.querystring ? { querystring: doc.querystring } : {}),
          ...(doc.body ? { body: doc.body } : {}),
          response: responsesOf(doc),
        } as never,
        url,
      };
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', deepLinking: true, persistAuthorization: true } });
}
