/**
 * The sizing model of docs/DEPLOYMENT.md and the KEDA lag thresholds of deploy/keda, from the figures
 * measured by the bench (docs/PERFORMANCE.md). `node --import tsx scripts/deploy/sizing.ts` prints the
 * tables the docs show; test/k8s.test.ts checks the docs and the ScaledObjects against this file.
 */

/** Measured figures, each with the command that produced it (docs/PERFORMANCE.md, "Current results"). */
export const MEASURED = {
  noop: {
    command: 'npm run bench -- --mode noop',
    runs: 'eight runs, quiet 2-core VM, NATS door, 10 records per flow',
    /** CPU ms per flow at saturation, per process: [low, high] over the runs. */
    cpuMsPerFlow: { nats: [0.67, 0.83], orchestrator: [0.79, 0.9], 'dataset-generator': [0.18, 0.2], analyst: [0.19, 0.22], ingest: [0, 0.05] },
    saturationFlowsPerSec: [799, 972],
  },
  real: {
    command: 'npm run bench -- --mode real --window 50',
    runs: 'two runs, quiet 2-core VM, one replica of each service, JETFLOW_WORKER_THREADS=2, 10 records per flow',
    cpuMsPerFlow: { orchestrator: [7, 8], 'dataset-generator': [12, 14], analyst: [12, 14], all: [39, 43] },
    /** Flows/s through ONE pod of each worker service at saturation (closed loop, 50 in flight). */
    perPodFlowsPerSec: [36.4, 38.5],
  },
  /**
   * Ingest's CPU per flow submitted over HTTP (POST /v1/flows: auth, validation, idempotency claim,
   * publish). One run at 200/s offered on the 2-core VM while other builds loaded it (load average ~10):
   * an upper bound (the same run put the orchestrator at 1.4 ms/flow, 0.9 on the quiet box).
   */
  httpDoor: { command: 'npm run bench -- --mode noop --rates 200 --duration 10 --no-saturation --no-ceiling --door http', ingestCpuMsPerFlow: 0.89 },
  /** JetStream publish+consume ceiling of one stream on one 2-vCPU server (R1), same runs as noop. */
  streamCeilingMsgsPerSec: [51_900, 57_100],
  kvCasCeilingOpsPerSec: [74_000, 79_000],
  /** Messages stored per flow on the busiest streams (23 in all; KV_jetflow_flows: 4 writes). */
  msgsPerFlow: { JETFLOW_EVENTS: 8, JETFLOW_RESULTS: 7, JETFLOW_TASKS: 6, KV_jetflow_flows: 4 },
} as const;

/** Planning choices (not measurements): each is stated in docs/DEPLOYMENT.md with its reason. */
export const PLAN = {
  /** Busy share of a core a Node service is sized to (one event loop: at most one core of JS). */
  utilisation: 0.7,
  /** Queue wait a worker task may have before KEDA adds a pod (the flow deadline is 10 s for two stages). */
  queueBudgetS: 0.5,
  /** Messages in flight per task consumer per worker pod (JETFLOW_WORKER_CONCURRENCY in the Deployments). */
  concurrency: 4,
  /** Share of the measured R1 single-stream ceiling one R3 stream is planned at (replication, bursts). */
  streamBudgetShare: 0.5,
  /** Replicas kept for availability whatever the load. */
  minReplicas: { ingest: 2, orchestrator: 2, 'dataset-generator': 1, analyst: 1 },
} as const;

export type Mode = 'noop' | 'real';

/**
 * KEDA's nats-jetstream metric is num_pending + num_ack_pending of one consumer, and the HPA divides it
 * by the pod count (AverageValue). A pod at its measured rate r (tasks/s of that consumer: one task per
 * flow) with at most `concurrency` in flight should hold r x queueBudget queued plus what it runs.
 * The low end of the measured per-pod rate is used, so the autoscaler errs towards one pod too many.
 */
export function lagThreshold(): number {
  const r = MEASURED.real.perPodFlowsPerSec[0];
  return Math.ceil(r * PLAN.queueBudgetS + PLAN.concurrency);
}

/** One cell = one 3-node NATS cluster and its services; its rate is bounded by its busiest stream. */
export function cellCapacity(): number {
  const budget = MEASURED.streamCeilingMsgsPerSec[0] * PLAN.streamBudgetShare;
  const busiest = Math.max(...Object.values(MEASURED.msgsPerFlow));
  return Math.floor(budget / busiest);
}

export interface Sizing {
  rate: number;
  mode: Mode;
  cells: number;
  perCell: number;
  natsNodes: number;
  /** vCPU busy per NATS node (each node stores every R3 message of its cell: about one R1 server's work). */
  natsCoresPerNode: number;
  pods: Record<'ingest' | 'orchestrator' | 'dataset-generator' | 'analyst', number>;
  /** Real mode: worker pods if they reached their full 2 cores (CPU bound) instead of the measured rate. */
  workerPodsCpuBound?: number;
  partitionsPerCell: number;
}

const HIGH = 1;

export function size(rate: number, mode: Mode): Sizing {
  const cells = Math.ceil(rate / cellCapacity());
  const perCell = rate / cells;
  const n = MEASURED.noop.cpuMsPerFlow;
  const coresFor = (msPerFlow: number, r: number) => (r * msPerFlow) / 1000;
  // One event loop per pod: a Node service gets at most one core of JS work.
  const podsOf = (msPerFlow: number, minimum: number) => Math.max(minimum, Math.ceil(coresFor(msPerFlow, perCell) / PLAN.utilisation)) * cells;
  let orchestrator: number;
  let workers: Record<'dataset-generator' | 'analyst', number>;
  let workerPodsCpuBound: number | undefined;
  if (mode === 'noop') {
    orchestrator = podsOf(n.orchestrator[HIGH], PLAN.minReplicas.orchestrator);
    workers = { 'dataset-generator': podsOf(n['dataset-generator'][HIGH], 1), analyst: podsOf(n.analyst[HIGH], 1) };
  } else {
    const rm = MEASURED.real.cpuMsPerFlow;
    orchestrator = podsOf(rm.orchestrator[HIGH], PLAN.minReplicas.orchestrator);
    const perPod = MEASURED.real.perPodFlowsPerSec[0];
    const w = Math.ceil(perCell / perPod) * cells;
    workers = { 'dataset-generator': w, analyst: w };
    // Two worker threads on two requested cores.
    workerPodsCpuBound = Math.ceil(coresFor(rm['dataset-generator'][HIGH], perCell) / (2 * PLAN.utilisation)) * cells;
  }
  // Sized for every flow arriving over HTTP (the NATS door costs ingest nothing; gRPC assumed like HTTP).
  const ingest = podsOf(MEASURED.httpDoor.ingestCpuMsPerFlow, PLAN.minReplicas.ingest);
  // Orchestrator replicas split result partitions (p mod members): at least one partition per replica.
  const partitionsPerCell = Math.max(8, 2 ** Math.ceil(Math.log2(orchestrator / cells)));
  return {
    rate,
    mode,
    cells,
    perCell,
    natsNodes: 3 * cells,
    natsCoresPerNode: Math.round(coresFor(n.nats[HIGH], perCell) * 10) / 10,
    pods: { ingest, orchestrator, ...workers },
    ...(workerPodsCpuBound !== undefined ? { workerPodsCpuBound } : {}),
    partitionsPerCell,
  };
}

export const RATES = [1_000, 10_000, 50_000] as const;

/** The table docs/DEPLOYMENT.md shows (the test compares them). */
export function sizingTable(): string {
  const rows = [
    '| flows/s | mode | cells | flows/s per cell | NATS nodes (vCPU busy each) | ingest (all HTTP) | orchestrator | dataset-generator | analyst | JETFLOW_PARTITIONS |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const mode of ['noop', 'real'] as const) {
    for (const rate of RATES) {
      const s = size(rate, mode);
      const w = (k: 'dataset-generator' | 'analyst') => (s.workerPodsCpuBound !== undefined ? `${s.pods[k]} (${s.workerPodsCpuBound} if CPU-bound)` : `${s.pods[k]}`);
      // Real mode's nats-server CPU was not measured apart from the services': noop's is its floor.
      const nats = `${s.natsNodes} (${mode === 'real' ? '≥ ' : ''}${s.natsCoresPerNode})`;
      rows.push(
        `| ${rate.toLocaleString('en-US')} | ${mode} | ${s.cells} | ${Math.round(s.perCell).toLocaleString('en-US')} | ${nats} | ${s.pods.ingest} | ${s.pods.orchestrator} | ${w('dataset-generator')} | ${w('analyst')} | ${s.partitionsPerCell} |`,
      );
    }
  }
  return rows.join('\n');
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  process.stdout.write(`lagThreshold = ceil(${MEASURED.real.perPodFlowsPerSec[0]} x ${PLAN.queueBudgetS} + ${PLAN.concurrency}) = ${lagThreshold()}\n`);
  process.stdout.write(
    `cell capacity = floor(${MEASURED.streamCeilingMsgsPerSec[0]} x ${PLAN.streamBudgetShare} / ${Math.max(...Object.values(MEASURED.msgsPerFlow))}) = ${cellCapacity()} flows/s\n\n`,
  );
  process.stdout.write(`${sizingTable()}\n`);
}
