import { setTracingEnabled } from './tracing.js';
import type { TelemetryConfig } from './config.js';

export * from './attributes.js';
export * from './tracing.js';
export * from './config.js';

export interface Telemetry {
  readonly tracing: boolean;
  /** Flushes spans still buffered (bounded, so a dead collector cannot hold up a shutdown). */
  shutdown(): Promise<void>;
}

/**
 * Starts tracing for a service process when configured: call once, first thing in main.ts, before
 * any message is handled. Libraries never call this; they use @opentelemetry/api only.
 */
export async function startTelemetry(service: string, cfg: TelemetryConfig, instanceId?: string): Promise<Telemetry> {
  if (!cfg.tracing) return { tracing: false, shutdown: async () => undefined };
  const { startSdk } = await import('./sdk.js');
  const stop = startSdk(service, { instanceId, serviceVersion: cfg.serviceVersion });
  setTracingEnabled(true);
  let stopping: Promise<void> | undefined;
  return {
    tracing: true,
    shutdown() {
      stopping ??= Promise.race([stop().catch(() => undefined), new Promise<void>((r) => setTimeout(r, 3_000).unref())]).then(() => setTracingEnabled(false));
      return stopping;
    },
  };
}
