import { Gauge } from 'prom-client';
import type { KV, KvWatchInclude } from 'nats';
import { DEF_PAUSE_PREFIX } from '@jetflow/flows';
import type { Logger } from '@jetflow/logging';
import { registry } from '@jetflow/metrics';

/** The gauge of paused things, by kind (flow, definition, subject): every orchestrator replica reports the same (use max). */
export const PAUSED_GAUGE = 'jetflow_paused';

/**
 * The pause flags of KV jetflow_pauses (`def.<name>`, `flow.<flowId>`, `subject.<kind>.<name>`), followed
 * by one KV watch, for the `jetflow_paused{kind}` gauge. Not what a flow's start decides by: a watch
 * lags a write by milliseconds, so the start reads its definition's flag from the stream leader.
 */
export class PausedDefinitions {
  private readonly keys = new Set<string>();
  private stopWatch?: () => void;
  readonly ready: Promise<void>;

  constructor(kv: Pick<KV, 'watch'>, log?: Logger) {
    let initialized!: () => void;
    this.ready = new Promise<void>((r) => (initialized = r));
    void (async () => {
      const w = await kv.watch({ key: '>', include: 'last_value' as KvWatchInclude, initializedFn: () => initialized() });
      this.stopWatch = () => w.stop();
      for await (const e of w) {
        if (e.operation === 'PUT') this.keys.add(e.key);
        else this.keys.delete(e.key);
      }
    })().catch((err: Error) => {
      log?.warn({ err: err.message }, 'pause flags watch ended');
      initialized();
    });
    if (!registry.getSingleMetric(PAUSED_GAUGE)) {
      const keys = this.keys;
      new Gauge({
        name: PAUSED_GAUGE,
        help: 'Paused flows, definitions and task subjects (their flags in KV jetflow_pauses).',
        labelNames: ['kind'],
        registers: [registry],
        collect(this: Gauge<'kind'>) {
          const n = { flow: 0, definition: 0, subject: 0 };
          for (const k of keys) {
            if (k.startsWith('flow.')) n.flow++;
            else if (k.startsWith(DEF_PAUSE_PREFIX)) n.definition++;
            else if (k.startsWith('subject.')) n.subject++;
          }
          for (const [kind, v] of Object.entries(n)) this.set({ kind }, v);
        },
      });
    }
  }

  has(name: string): boolean {
    return this.keys.has(`${DEF_PAUSE_PREFIX}${name}`);
  }

  stop(): void {
    this.stopWatch?.();
  }
}
