import { readFileSync, writeFileSync } from 'node:fs';
import type { CeilingResult } from '../ceiling.js';
import type { Percentiles } from '../stats.js';
import type { BenchOptions, Door, History, TaskMode } from './options.js';

/** The version of the results file; --compare refuses files of another one. */
export const RESULTS_FORMAT = 2;

export interface StepResult {
  mode: TaskMode;
  history: History;
  door: Door;
  /** open: fixed rate; saturation: closed loop for a time; burst: closed loop for a number of flows. */
  kind: 'open' | 'saturation' | 'burst';
  /** An open-loop step started right after a burst, with the burst's flows still in flight. */
  afterBurst: boolean;
  /** Offered flows/s (open loop) or null (closed loop). */
  offered: number | null;
  window: number | null;
  durationS: number;
  /** Flows of earlier steps still in flight when this step started (their work lands in this step). */
  backlogAtStart: number;
  /** Submissions sent / accepted (PubAck, HTTP 202 or gRPC OK) / refused. */
  submitted: number;
  accepted: number;
  refused: number;
  /** Accepted flows of this step whose callback arrived before the drain ended. */
  completed: number;
  /** Callbacks of any flow between the step's two snapshots: the denominator of every per-flow cost. */
  completedInInterval: number;
  /** Flows of this step completed per second over the measured window. */
  completedPerSec: number;
  /** Submit (scheduled time for open loop) to callback arrival, ms. */
  latencyMs: Percentiles;
  exactlyOnce: { ok: boolean; missing: number; duplicates: number; deliveryIdMismatch: number; notSucceeded: number };
  /** Messages stored per completed flow, per stream (last_seq deltas; KV_* are KV writes). */
  streamMsgsPerFlow: Record<string, number>;
  jsMsgsPerFlow: number;
  kvWritesPerFlow: number;
  kvReadsPerFlow: number;
  /** Core NATS messages in and out of each service connection per flow (acks, pulls, PubAcks included). */
  natsMsgsPerFlow: Record<string, { in: number; out: number }>;
  /** system = nats-server + the four services; the driver and the local AWS stand-ins apart. */
  cpuMsPerFlow: { system: number; driver: number; byProcess: Record<string, number> };
  /** Share of one core used during the step, per process. */
  cpuCores: Record<string, number>;
  peakRssMb: Record<string, number>;
  servicesPeakRssMb: number;
  /** Sum of the services' peak PSS (shared pages such as the node binary counted once), MB. */
  servicesPeakPssMb: number;
  /** RSS of each process right after start, before any flow (MB). */
  idleRssMb: Record<string, number>;
  utilisation: { js: number; kv: number; combined: number } | null;
  elapsedS: number;
}

/** One started stack (a task mode with history on or off): what it costs doing nothing. */
export interface StackResult {
  mode: TaskMode;
  history: History;
  /** Share of one core (%) per process over a quiet interval after start, and their sum (system). */
  idleCpuPct: Record<string, number>;
  idleSystemCpuPct: number;
  idleSeconds: number;
  idleRssMb: Record<string, number>;
  /**
   * nats-server's side of the quiet interval (/varz, /jsz): messages in plus out per second (pull requests,
   * heartbeats, reports, lease renewals and their acks) and JetStream API requests per second (infos,
   * listings, consumers made). Absent in files written before they were measured.
   */
  idleMsgsPerSec?: number;
  idleApiPerSec?: number;
}

export interface BenchResult {
  format: number;
  meta: { startedAt: string; command: string; node: string; natsServer: string; cpus: number; cpuModel: string; options: BenchOptions };
  ceiling: CeilingResult | null;
  stacks: StackResult[];
  steps: StepResult[];
  /** Flows accepted in the whole run, and the global exactly-once check after the last drain. */
  exactlyOnce: { accepted: number; once: number; missing: number; duplicates: number; unknown: number; ok: boolean };
  targets: Array<{ target: string; measured: string; ok: boolean | null }>;
  aborted: string | null;
  elapsedS: number;
}

export function writeResults(file: string, r: BenchResult): void {
  writeFileSync(file, `${JSON.stringify(r, null, 2)}\n`);
}

/** Reads a results file for --compare, refusing what is not one (naming the file and what is wrong). */
export function readResults(file: string): BenchResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`${file}: cannot read: ${(err as Error).message}`);
  }
  let r: unknown;
  try {
    r = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not JSON: ${(err as Error).message}`);
  }
  if (!r || typeof r !== 'object' || Array.isArray(r)) throw new Error(`${file}: not a bench results file (expected an object)`);
  const o = r as Partial<BenchResult>;
  if (o.format !== RESULTS_FORMAT)
    throw new Error(`${file}: results format ${JSON.stringify(o.format ?? null)}, expected ${RESULTS_FORMAT} (written by another version of the bench: run it again)`);
  if (!Array.isArray(o.steps)) throw new Error(`${file}: "steps" is not a list`);
  o.steps.forEach((s, i) => {
    if (!s || typeof s !== 'object') throw new Error(`${file}: steps[${i}] is not an object`);
    for (const k of ['mode', 'history', 'door', 'kind'] as const) if (typeof s[k] !== 'string') throw new Error(`${file}: steps[${i}].${k} is not a string`);
    if (!s.latencyMs || typeof s.latencyMs !== 'object') throw new Error(`${file}: steps[${i}].latencyMs is missing`);
    if (!s.cpuMsPerFlow || typeof s.cpuMsPerFlow !== 'object' || !s.cpuMsPerFlow.byProcess) throw new Error(`${file}: steps[${i}].cpuMsPerFlow is missing`);
  });
  if (!Array.isArray(o.stacks)) throw new Error(`${file}: "stacks" is not a list`);
  return o as BenchResult;
}
