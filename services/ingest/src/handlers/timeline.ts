import { stagesOf, type FlowDef, type FlowState } from '@jetflow/flows';

/**
 * The trace id of a W3C traceparent (00-<trace id>-<span id>-<flags>) whose trace is recorded (the
 * sampled flag): a flow without a trace of its own carries an unsampled one for its logs, with no spans to link to.
 */
export function traceIdOf(traceparent: string | undefined): string | null {
  const m = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$/.exec(traceparent ?? '');
  return m && !/^0+$/.test(m[1]!) && (parseInt(m[2]!, 16) & 1) === 1 ? m[1]! : null;
}

/**
 * A flow as a waterfall: every task with its dispatch, start and finish times (epoch ms), so a
 * view can place bars on one time axis from the submission, plus the trace link when traced.
 */
export function timelineOf(s: FlowState, def: FlowDef | undefined, jaegerUrl: string | undefined) {
  const traceId = traceIdOf(s.traceparent);
  const stageDefs = def ? stagesOf(def) : [];
  const stages = stageDefs.map((st, i) => ({
    name: st.name,
    onFailure: st.onFailure,
    tasks: st.tasks.map((td) => {
      const t = s.tasks[td.name];
      return {
        name: td.name,
        subject: td.subject,
        status: t?.status ?? 'pending',
        attempts: t?.attempts ?? 0,
        dispatchedAt: t?.dispatchedAt ?? null,
        startedAt: t?.startedAt ?? null,
        finishedAt: t?.finishedAt ?? null,
        durationMs: t?.durationMs ?? null,
        error: t?.error ?? null,
        worker: t?.worker ?? null,
        stage: i,
      };
    }),
  }));
  return {
    flowId: s.flowId,
    flow: s.flow,
    version: s.version,
    status: s.status,
    stage: s.stage,
    submittedAt: s.submittedAt,
    startedAt: s.startedAt,
    deadlineAt: s.deadlineAt,
    finishedAt: s.finishedAt ?? null,
    now: Date.now(),
    endReason: s.endReason ?? null,
    errors: s.errors,
    metadata: s.metadata,
    idempotencyKey: s.idempotencyKey ?? null,
    priority: s.priority ?? 5,
    traceId,
    traceUrl: traceId && jaegerUrl ? `${jaegerUrl.replace(/\/+$/, '')}/trace/${traceId}` : null,
    stages,
  };
}
