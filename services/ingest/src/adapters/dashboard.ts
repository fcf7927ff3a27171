import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { extname, join } from 'node:path';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { findUp } from './find-up.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/**
 * The dashboard: a few static files (services/ingest/ui, no build step) read once at start and
 * served from memory under /ui. The page asks for the API key and calls the API like any client.
 */
export function registerDashboard(app: FastifyInstance): void {
  const files = new Map<string, { body: Buffer; type: string; etag: string }>();
  let dir: string;
  try {
    dir = findUp('services/ingest/ui');
  } catch {
    // An image built without the ui/ folder: the API works, the dashboard says what is missing.
    app.log.warn('dashboard files (services/ingest/ui) not found; /ui is disabled');
    const missing = async (_req: unknown, reply: FastifyReply) =>
      reply.code(404).send({ error: { code: 'not_found', message: 'the dashboard files (services/ingest/ui) are not in this deployment', details: [] } });
    app.get('/ui', { schema: { hide: true } }, missing);
    app.get('/ui/*', { schema: { hide: true } }, missing);
    return;
  }
  for (const name of readdirSync(dir)) {
    const type = TYPES[extname(name)];
    if (!type) continue;
    const body = readFileSync(join(dir, name));
    files.set(name, { body, type, etag: `"${createHash('sha1').update(body).digest('hex').slice(0, 16)}"` });
  }

  const hide = { schema: { hide: true } };
  app.get('/ui', hide, async (_req, reply) => reply.redirect('/ui/'));
  app.get<{ Params: { '*': string } }>('/ui/*', hide, async (req, reply) => {
    const name = req.params['*'] || 'index.html';
    // Hash routes (#/flows/…) keep every page on index.html; anything unknown is a 404.
    const f = files.get(name);
    if (!f) return reply.code(404).send({ error: { code: 'not_found', message: `no dashboard file ${name}`, details: [] } });
    if (req.headers['if-none-match'] === f.etag) return reply.code(304).send();
    return reply
      .header('content-type', f.type)
      .header('etag', f.etag)
      .header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff')
      .header('content-security-policy', "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
      .send(f.body);
  });
}
