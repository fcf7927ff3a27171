import { bool, list, optStr, type Env } from '@jetflow/config';

export interface TelemetryConfig {
  /** Start the OpenTelemetry SDK (and pay its load time) only when traces have somewhere to go. */
  tracing: boolean;
  serviceVersion: string | undefined;
}

/**
 * Tracing is on when an OTLP endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT or
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or OTEL_TRACES_EXPORTER names an exporter, and neither
 * OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none says otherwise. Every other OTEL_* variable
 * (protocol, headers, sampler, batch sizes, resource attributes) is read by the SDK itself, as
 * OpenTelemetry specifies.
 */
export function telemetryConfig(env: Env, serviceVersion?: string): TelemetryConfig {
  const exporters = list(env, 'OTEL_TRACES_EXPORTER');
  const endpoint = optStr(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') ?? optStr(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  const disabled = bool(env, 'OTEL_SDK_DISABLED', false) || exporters.includes('none');
  return Object.freeze({ tracing: !disabled && (endpoint !== undefined || exporters.length > 0), serviceVersion });
}
