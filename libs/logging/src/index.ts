import { pino, type Logger } from 'pino';

export type { Logger };

/** One root logger per service; children bind flow id, task, subject and trace ids. */
export function createLogger(service: string, level = 'info'): Logger {
  return pino({
    name: service,
    level,
    base: { service },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Never log credentials or payload bodies.
    redact: {
      paths: ['authorization', 'headers.authorization', 'req.headers.authorization', '*.apiKey', '*.secret', 'input', '*.input', 'body', '*.body'],
      censor: '[redacted]',
    },
  });
}

/** The single place unexpected errors are reported with context (ready for Sentry or similar). */
export function reportError(log: Logger, err: unknown, context: Record<string, unknown> = {}): void {
  log.error({ err, ...context }, 'unexpected error');
}
