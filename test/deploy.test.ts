import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { CONSUMERS, STREAMS } from '../libs/messaging/src/topology.js';
import { BUILTIN_FLOWS, subjectMatches, taskSubjects } from '../libs/flows/src/index.js';

type Doc = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; spec?: Record<string, unknown>; data?: Record<string, string> };
type Container = { name: string; command?: string[]; env?: Array<{ name: string; value?: string }>; envFrom?: Array<{ configMapRef?: { name: string }; secretRef?: { name: string } }> };

function load(dir: string): Doc[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((f) =>
      parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => {
        assert.deepEqual(d.errors, [], `${f} parses`);
        return d.toJSON() as Doc;
      }),
    );
}

const k8s = load('deploy/k8s');
const keda = load('deploy/keda');
const deployments = k8s.filter((d) => d.kind === 'Deployment');
const containerOf = (d: Doc) => ((d.spec as { template: { spec: { containers: Container[] } } }).template.spec.containers[0]!);
const envOf = (d: Doc) => Object.fromEntries((containerOf(d).env ?? []).map((e) => [e.name, e.value]));
const configVars = new Set(Object.keys(k8s.find((d) => d.kind === 'ConfigMap')?.data ?? {}));
const allSubjects = taskSubjects(BUILTIN_FLOWS);

test('every service has a Deployment whose command runs its compiled main', () => {
  for (const name of ['ingest', 'orchestrator', 'dataset-generator', 'analyst']) {
    const d = deployments.find((x) => x.metadata.name === name);
    assert.ok(d, `Deployment ${name}`);
    assert.deepEqual(containerOf(d).command, ['node', `dist/services/${name}/src/main.js`]);
    assert.ok(existsSync(`services/${name}/src/main.ts`));
  }
});

test('the variables the manifests set are ones the code reads', () => {
  const sources = ['libs/config/src/index.ts', 'libs/config/src/worker.ts', 'libs/config/src/storage.ts', 'libs/telemetry/src/config.ts', 'libs/flows/src/load.ts', ...['ingest', 'orchestrator', 'dataset-generator', 'analyst'].map((s) => `services/${s}/src/config.ts`)]
    .filter(existsSync)
    .map((f) => readFileSync(f, 'utf8'))
    .join('\n');
  const names = new Set([...configVars, ...deployments.flatMap((d) => Object.keys(envOf(d)))]);
  for (const v of names) {
    if (/^(OTEL_|AWS_)/.test(v)) continue; // read by the OpenTelemetry and AWS SDKs
    assert.ok(sources.includes(`'${v}'`), `${v} is read by some config.ts`);
  }
});

test('KEDA scales each worker Deployment on exactly the consumers of the task subjects it serves (names from the topology module)', () => {
  const scaled = keda.filter((d) => d.kind === 'ScaledObject');
  assert.ok(scaled.length >= 2);
  const covered = new Set<string>();
  for (const so of scaled) {
    const spec = so.spec as { scaleTargetRef: { name: string }; triggers: Array<{ type: string; metadata: Record<string, string> }> };
    const target = deployments.find((d) => d.metadata.name === spec.scaleTargetRef.name);
    assert.ok(target, `${so.metadata.name} targets an existing Deployment`);
    const patterns = (envOf(target).JETFLOW_TASK_SUBJECTS ?? '').split(',').filter(Boolean);
    assert.ok(patterns.length, `${target.metadata.name} sets JETFLOW_TASK_SUBJECTS`);
    const served = allSubjects.filter((s) => patterns.some((p) => subjectMatches(p, s)));
    const want = served.map((s) => CONSUMERS.task(s)).sort();
    const got: string[] = [];
    for (const t of spec.triggers) {
      assert.equal(t.type, 'nats-jetstream');
      // KEDA's nats-jetstream scaler needs all of these; a missing stream or consumer is not caught by schema validation.
      for (const k of ['natsServerMonitoringEndpoint', 'account', 'stream', 'consumer', 'lagThreshold']) assert.ok(t.metadata[k], `${so.metadata.name}: trigger has ${k}`);
      assert.equal(t.metadata.stream, STREAMS.tasks);
      assert.ok(Number(t.metadata.lagThreshold) > 0);
      got.push(t.metadata.consumer!);
    }
    assert.deepEqual(got.sort(), want, `${so.metadata.name}: one trigger per served consumer`);
    for (const c of got) covered.add(c);
  }
  assert.deepEqual([...covered].sort(), allSubjects.map((s) => CONSUMERS.task(s)).sort(), 'every task consumer scales something');
});
