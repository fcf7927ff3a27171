import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { CONSUMERS, STREAMS } from '@jetflow/messaging';
import { BUILTIN_FLOWS, allTasks, loadFlowRegistry, subjectMatches, taskSubjects, validateDefinitions, knownSubjects } from '@jetflow/flows';
import { natsServerBinary } from '@jetflow/testing';
import { JETFLOW_ACCOUNT } from '@jetflow/security';
import { generateDeploySecrets } from '../scripts/gen-deploy-secrets.js';
import { MEASURED, cellCapacity, lagThreshold, sizingTable } from '../scripts/deploy/sizing.js';
import { validateNatsTrigger, validateObject, type K8sObject } from './k8s-schema.js';

const SERVICES = ['ingest', 'orchestrator', 'dataset-generator', 'analyst'] as const;
const WORKERS = ['dataset-generator', 'analyst'] as const;
const VERSION = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version;

/** kubectl with kustomize v4+ (kubectl 1.21+); .ci/run installs it when it can and says what is missing when not. */
function kubectl(): string {
  const candidates = [process.env.KUBECTL, '/usr/bin/kubectl', '/usr/local/bin/kubectl'].filter((x): x is string => !!x);
  const bin = candidates.find((c) => existsSync(c));
  assert.ok(bin, `kubectl not found (looked at ${candidates.join(', ')}): the deploy tests build the overlays with kubectl kustomize`);
  const v = execFileSync(bin, ['version', '--client', '-o', 'json'], { encoding: 'utf8' });
  const minor = Number((JSON.parse(v) as { clientVersion: { minor: string } }).clientVersion.minor.replace(/\D.*$/, ''));
  assert.ok(minor >= 21, `${bin} is 1.${minor}: its kustomize is too old for these kustomizations (needs kubectl 1.21+, kustomize v4+)`);
  return bin;
}

function build(dir: string): K8sObject[] {
  const text = execFileSync(kubectl(), ['kustomize', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return parseAllDocuments(text).map((d) => {
    assert.deepEqual(d.errors, [], `${dir}: kustomize output parses`);
    const o = d.toJSON() as K8sObject;
    // kustomize folds long base64 values over lines; the API server's decoder skips the newlines, the schema's pattern does not.
    if (o.kind === 'Secret' && o.data) o.data = Object.fromEntries(Object.entries(o.data as Record<string, string>).map(([k, v]) => [k, v.replace(/\s/g, '')]));
    return o;
  });
}

type Probe = { httpGet?: { path: string; port: string | number }; grpc?: { port: number; service?: string }; tcpSocket?: unknown };
type Container = {
  name: string;
  image: string;
  command?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: unknown }>;
  envFrom?: Array<{ configMapRef?: { name: string }; secretRef?: { name: string } }>;
  ports?: Array<{ name?: string; containerPort: number }>;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: { allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; runAsNonRoot?: boolean; capabilities?: { drop?: string[] }; privileged?: boolean };
  volumeMounts?: Array<{ name: string; mountPath: string }>;
};
type PodSpec = {
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  terminationGracePeriodSeconds?: number;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; seccompProfile?: { type: string } };
  containers: Container[];
  initContainers?: Container[];
  volumes?: Array<{
    name: string;
    configMap?: { name: string };
    secret?: { secretName: string };
    projected?: { sources: Array<{ configMap?: { name: string }; secret?: { name: string } }> };
  }>;
  affinity?: { podAntiAffinity?: { requiredDuringSchedulingIgnoredDuringExecution?: unknown[]; preferredDuringSchedulingIgnoredDuringExecution?: unknown[] } };
};
type Workload = K8sObject & {
  spec: { replicas?: number; selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> }; spec: PodSpec }; volumeClaimTemplates?: unknown[] };
};

const find = (objs: K8sObject[], kind: string, name: string) => objs.find((o) => o.kind === kind && (o.metadata.name === name || o.metadata.name.startsWith(`${name}-`)));
const get = <T extends K8sObject>(objs: K8sObject[], kind: string, name: string): T => {
  const o = find(objs, kind, name);
  assert.ok(o, `${kind} ${name}`);
  return o as T;
};
const container = (w: Workload) => w.spec.template.spec.containers[0]!;
const envOf = (c: Container) => Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
const secretData = (s: K8sObject) => Object.fromEntries(Object.entries((s.data as Record<string, string>) ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
const matchesLabels = (sel: Record<string, string>, labels: Record<string, string>) => Object.entries(sel).every(([k, v]) => labels[k] === v);

let prodDir: string;
const overlays: Record<'dev' | 'production' | 'withWorker', K8sObject[]> = { dev: [], production: [], withWorker: [] };

before(() => {
  // Production's secrets are git-ignored: render them the way an operator does, into a copy of deploy/.
  prodDir = mkdtempSync(join(tmpdir(), 'jetflow-deploy-'));
  cpSync('deploy', join(prodDir, 'deploy'), { recursive: true, filter: (src) => !src.includes('/production/secrets') });
  generateDeploySecrets({ out: join(prodDir, 'deploy/k8s/overlays/production/secrets'), tenants: ['acme', 'globex'], bcryptCost: 4 });
  overlays.dev = build('deploy/k8s/overlays/dev');
  overlays.production = build(join(prodDir, 'deploy/k8s/overlays/production'));
  // A worker of one's own, added the way docs/DEPLOYMENT.md says: its NATS login, the template, two kustomization lines.
  const withWorker = join(prodDir, 'with-worker');
  cpSync('deploy', join(withWorker, 'deploy'), { recursive: true, filter: (src) => !src.includes('/production/secrets') });
  const prod = join(withWorker, 'deploy/k8s/overlays/production');
  generateDeploySecrets({ out: join(prod, 'secrets'), tenants: ['acme'], workers: { 'sentiment-gpu': ['jetflow.task.analyst.sentiment'] }, bcryptCost: 4 });
  cpSync('deploy/k8s/templates/worker.yaml', join(prod, 'sentiment-gpu.yaml'));
  const k = readFileSync(join(prod, 'kustomization.yaml'), 'utf8')
    .replace('  - ../../../keda\n', '  - ../../../keda\n  - sentiment-gpu.yaml\n')
    .replace('secretGenerator:\n', 'secretGenerator:\n  - { name: worker-sentiment-gpu-secrets, envs: [secrets/worker-sentiment-gpu.env] }\n');
  writeFileSync(join(prod, 'kustomization.yaml'), k);
  overlays.withWorker = build(prod);
});
after(() => rmSync(prodDir, { recursive: true, force: true }));

describe('deploy/k8s builds with kustomize and every object is valid', () => {
  test('both overlays build; production includes the KEDA ScaledObjects, dev does not', () => {
    for (const [name, objs] of Object.entries(overlays)) {
      assert.ok(objs.length > 20, `${name}: ${objs.length} objects`);
      for (const o of objs) if (o.kind !== 'Namespace') assert.equal(o.metadata.namespace, 'jetflow', `${name}: ${o.kind} ${o.metadata.name} in namespace jetflow`);
    }
    assert.equal(overlays.production.filter((o) => o.kind === 'ScaledObject').length, 2);
    assert.equal(overlays.dev.filter((o) => o.kind === 'ScaledObject').length, 0);
  });

  test('every object validates against the Kubernetes and KEDA schemas, unknown fields refused', () => {
    for (const [name, objs] of Object.entries(overlays)) {
      const errors = objs.flatMap(validateObject);
      assert.deepEqual(errors, [], name);
    }
  });

  test('the schema check can fail: a wrong type, a missing required field, an unknown field, an unknown kind', () => {
    const d = structuredClone(get<Workload>(overlays.dev, 'Deployment', 'ingest'));
    assert.deepEqual(validateObject(d), []);
    const wrongType = structuredClone(d);
    (wrongType.spec as { replicas: unknown }).replicas = 'two';
    assert.ok(validateObject(wrongType).length);
    const missing = structuredClone(d);
    delete (missing.spec.template.spec.containers[0] as Partial<Container>).name;
    assert.ok(validateObject(missing).length);
    const unknown = structuredClone(d);
    (unknown.spec.template.spec.containers[0]!.securityContext as Record<string, unknown>).readOnlyRootFilesytem = true;
    assert.match(validateObject(unknown).join('\n'), /unknown field spec\.template\.spec\.containers\[0\]\.securityContext\.readOnlyRootFilesytem/);
    assert.match(validateObject({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } }).join(''), /no schema/);
    const so = structuredClone(get(overlays.production, 'ScaledObject', 'analyst'));
    (so.spec as Record<string, unknown>).minReplicas = 1;
    assert.match(validateObject(so).join(''), /unknown field spec\.minReplicas/);
  });

  test('every nats-jetstream trigger has the metadata KEDA needs and nothing it ignores', () => {
    for (const so of overlays.production.filter((o) => o.kind === 'ScaledObject')) {
      for (const t of (so.spec as { triggers: Array<{ type: string; metadata: Record<string, string> }> }).triggers) {
        assert.equal(t.type, 'nats-jetstream');
        assert.deepEqual(validateNatsTrigger(so.metadata.name, t.metadata), []);
      }
    }
    assert.match(validateNatsTrigger('x', { natsServerMonitoringEndpoint: 'n:8222', account: 'A', consumer: 'c', lagThreshold: '5' }).join(''), /without stream/);
    assert.match(
      validateNatsTrigger('x', { natsServerMonitoringEndpoint: 'n:8222', account: 'A', stream: 's', consumer: 'c', lagThreshold: '5', lagTreshold: '1' }).join(''),
      /unknown metadata lagTreshold/,
    );
  });
});

describe('policy: what every workload must have', () => {
  const workloads = (objs: K8sObject[]) => objs.filter((o): o is Workload => o.kind === 'Deployment' || o.kind === 'StatefulSet');

  test('a Deployment per service running its compiled main, and the NATS StatefulSet', () => {
    for (const [name, objs] of Object.entries(overlays)) {
      for (const s of SERVICES) {
        const c = container(get<Workload>(objs, 'Deployment', s));
        assert.deepEqual(c.command, ['node', `dist/services/${s}/src/main.js`]);
        assert.ok(existsSync(`services/${s}/src/main.ts`));
      }
      assert.ok(get(objs, 'StatefulSet', 'nats'));
      assert.equal(workloads(objs).length, name === 'withWorker' ? 6 : 5, 'nothing else runs');
    }
  });

  test('readiness and liveness probes: HTTP on ingest, grpc.health.v1 on its gRPC port, /healthz on the others', () => {
    for (const objs of Object.values(overlays)) {
      for (const w of workloads(objs)) for (const c of w.spec.template.spec.containers) assert.ok(c.readinessProbe && c.livenessProbe, `${w.metadata.name}/${c.name} has both probes`);
      const ingest = container(get<Workload>(objs, 'Deployment', 'ingest'));
      const grpcPort = Number(envOf(ingest).JETFLOW_GRPC_PORT);
      assert.equal(ingest.readinessProbe?.grpc?.port, grpcPort, 'ingest readiness: the gRPC health service on JETFLOW_GRPC_PORT');
      assert.ok(ingest.ports?.some((p) => p.containerPort === grpcPort && p.name === 'grpc'));
      assert.equal(ingest.livenessProbe?.httpGet?.path, '/healthz');
      assert.equal(ingest.livenessProbe?.httpGet?.port, 'http');
      for (const s of ['orchestrator', ...WORKERS]) {
        const c = container(get<Workload>(objs, 'Deployment', s));
        const metrics = c.ports?.find((p) => p.name === 'metrics');
        assert.equal(String(metrics?.containerPort), envOf(c).JETFLOW_METRICS_PORT, `${s}: the metrics port is JETFLOW_METRICS_PORT`);
        for (const p of [c.readinessProbe, c.livenessProbe]) assert.deepEqual(p?.httpGet, { path: '/healthz', port: 'metrics' }, `${s}: /healthz on the metrics server`);
      }
    }
  });

  test('resources: CPU and memory requests and a memory limit on every container', () => {
    for (const objs of Object.values(overlays)) {
      for (const w of workloads(objs)) {
        for (const c of w.spec.template.spec.containers) {
          assert.ok(c.resources?.requests?.cpu && c.resources.requests.memory, `${w.metadata.name}: requests`);
          assert.ok(c.resources.limits?.memory, `${w.metadata.name}: memory limit`);
        }
      }
    }
  });

  test('securityContext: non-root, read-only root, no privilege escalation, no capabilities, seccomp RuntimeDefault', () => {
    for (const objs of Object.values(overlays)) {
      for (const w of workloads(objs)) {
        const pod = w.spec.template.spec;
        assert.equal(pod.securityContext?.runAsNonRoot, true, `${w.metadata.name}: runAsNonRoot`);
        assert.ok((pod.securityContext?.runAsUser ?? 0) > 0, `${w.metadata.name}: a non-zero uid`);
        assert.equal(pod.securityContext?.seccompProfile?.type, 'RuntimeDefault', `${w.metadata.name}: seccomp`);
        for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
          assert.equal(c.securityContext?.allowPrivilegeEscalation, false, `${w.metadata.name}/${c.name}`);
          assert.equal(c.securityContext?.readOnlyRootFilesystem, true, `${w.metadata.name}/${c.name}`);
          assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL'], `${w.metadata.name}/${c.name}`);
          assert.notEqual(c.securityContext?.privileged, true);
        }
      }
      assert.equal(get(objs, 'Namespace', 'jetflow').metadata.labels?.['pod-security.kubernetes.io/enforce'], 'restricted');
    }
  });

  test('images by version: no latest, no untagged image; Jetflow at the package version, NATS 2.10+', () => {
    for (const [name, objs] of Object.entries(overlays)) {
      for (const w of workloads(objs)) {
        for (const c of w.spec.template.spec.containers) {
          const m = /^(.+?):([^:/@]+)(@sha256:[0-9a-f]{64})?$/.exec(c.image);
          assert.ok(m, `${w.metadata.name}: ${c.image} has a tag`);
          assert.notEqual(m[2], 'latest', `${w.metadata.name}: ${c.image}`);
          if (w.metadata.name === 'nats') {
            const v = /^(\d+)\.(\d+)\.(\d+)-alpine$/.exec(m[2]!);
            assert.ok(v, `nats pinned to an exact version: ${c.image}`);
            assert.ok(Number(v[1]) > 2 || Number(v[2]) >= 10, `nats ${m[2]} has the R3 KV fixes (nats-server#4320, #4162)`);
          } else if (/(^|\/)jetflow$/.test(m[1]!)) assert.equal(m[2], VERSION, `${name}: ${w.metadata.name} runs the release ${VERSION}`);
          else assert.equal(w.metadata.name, 'sentiment-gpu', `${name}: only the template's worker runs an image of its own`);
        }
      }
    }
    const prod = container(get<Workload>(overlays.production, 'Deployment', 'ingest')).image;
    assert.ok(!prod.startsWith('jetflow:'), `production pulls from a registry: ${prod}`);
  });

  test('terminationGracePeriodSeconds covers the longest hard limit of the flow definitions and each drain', () => {
    const defs = loadFlowRegistry({ JETFLOW_FLOWS_FILE: 'deploy/k8s/base/flows.json' }).defs;
    const longest = Math.max(...defs.flatMap((d) => allTasks(d).map((t) => t.hardLimitMs)));
    assert.ok(longest >= 1000);
    for (const objs of Object.values(overlays)) {
      for (const s of SERVICES) {
        const w = get<Workload>(objs, 'Deployment', s);
        const tgps = w.spec.template.spec.terminationGracePeriodSeconds ?? 30;
        assert.ok(tgps * 1000 >= longest, `${s}: ${tgps} s >= the longest hard limit ${longest} ms`);
        const grace = Number(envOf(container(w)).JETFLOW_SHUTDOWN_GRACE_MS ?? 10_000);
        if ((WORKERS as readonly string[]).includes(s)) assert.ok(grace >= longest, `${s}: JETFLOW_SHUTDOWN_GRACE_MS ${grace} lets a task run to its hard limit ${longest}`);
        // Ingest's drain is bounded at 10 s (main.ts), the others' at their grace + 2 s; plus a preStop sleep.
        const preStop = (container(w) as { lifecycle?: { preStop?: { sleep?: { seconds: number } } } }).lifecycle?.preStop?.sleep?.seconds ?? 0;
        const drain = s === 'ingest' ? 10_000 : grace + 2_000;
        assert.ok(tgps * 1000 >= drain + preStop * 1000 + 3_000, `${s}: ${tgps} s leaves room for the drain (${drain} ms) and preStop (${preStop} s)`);
      }
    }
  });

  test('its own ServiceAccount without a token per workload; its own Secret per service, holding only what it needs', () => {
    for (const objs of Object.values(overlays)) {
      for (const w of workloads(objs)) {
        const pod = w.spec.template.spec;
        assert.equal(pod.serviceAccountName, w.metadata.name, `${w.metadata.name}: its own ServiceAccount`);
        assert.equal(pod.automountServiceAccountToken, false, `${w.metadata.name}: no token in the pod`);
        assert.equal((get(objs, 'ServiceAccount', w.metadata.name) as { automountServiceAccountToken?: boolean }).automountServiceAccountToken, false);
      }
      const users = new Set<string>();
      for (const s of SERVICES) {
        const c = container(get<Workload>(objs, 'Deployment', s));
        const refs = (c.envFrom ?? []).flatMap((e) => (e.secretRef ? [e.secretRef.name] : []));
        assert.equal(refs.length, 1, `${s}: one Secret`);
        assert.match(refs[0]!, new RegExp(`^${s}-secrets-[a-z0-9]{10}$`), `${s}: its own, generated Secret (a new name per content, so pods roll)`);
        const data = secretData(get(objs, 'Secret', refs[0]!));
        assert.ok(data.NATS_USER && data.NATS_PASSWORD && data.NATS_INBOX_PREFIX, `${s}: a NATS identity`);
        assert.ok(!users.has(data.NATS_USER), `${s}: a NATS user of its own`);
        users.add(data.NATS_USER);
        assert.equal('JETFLOW_API_KEYS' in data, s === 'ingest', `${s}: API key hashes only in ingest`);
        assert.equal('JETFLOW_CALLBACK_SECRETS' in data, s === 'orchestrator', `${s}: callback secrets only in the orchestrator`);
        if (data.JETFLOW_API_KEYS) {
          const keys = data.JETFLOW_API_KEYS.split(',');
          for (const p of keys) assert.match(p, /^[a-z0-9][a-z0-9_-]*:(operator:)?sha256:[0-9a-f]{64}$/, 'API keys as hashes only');
          // The dashboard's Consumers page and `jetflow consumers` need one: tenant ops's, the only operator key.
          assert.deepEqual(
            keys.filter((p) => p.includes(':operator:')).map((p) => p.split(':')[0]),
            ['ops'],
            'one operator API key, for tenant ops',
          );
          assert.equal(data.JETFLOW_OPERATOR_TENANTS, 'ops');
        }
        for (const v of Object.values(data)) assert.doesNotMatch(v, /\$2[aby]\$/, `${s}: no NATS server hash in a service secret`);
      }
      const auth = secretData(get(objs, 'Secret', 'nats-auth'));
      assert.deepEqual(Object.keys(auth), ['auth.conf']);
      for (const pw of [...users].map((u) => auth['auth.conf']!.includes(u))) assert.ok(pw, 'every service user is in the server config');
      assert.doesNotMatch(auth['auth.conf']!, /"password": "(?!\$2[aby]\$)/, 'the server config holds bcrypt hashes only');
    }
  });

  test('a PodDisruptionBudget per workload', () => {
    for (const objs of Object.values(overlays)) {
      const pdbs = objs.filter((o) => o.kind === 'PodDisruptionBudget') as Array<
        K8sObject & { spec: { selector: { matchLabels: Record<string, string> }; maxUnavailable?: number; minAvailable?: number } }
      >;
      for (const w of workloads(objs)) {
        const p = pdbs.filter((x) => matchesLabels(x.spec.selector.matchLabels, w.spec.template.metadata.labels));
        assert.equal(p.length, 1, `${w.metadata.name}: one PDB`);
      }
      assert.equal(pdbs.find((p) => p.metadata.name === 'nats')?.spec.maxUnavailable, 1, 'NATS: one node down at most (quorum 2 of 3)');
    }
  });

  test('the flow definitions are a ConfigMap mounted where JETFLOW_FLOWS_FILE points, and they validate', () => {
    const defs = JSON.parse(readFileSync('deploy/k8s/base/flows.json', 'utf8')) as unknown[];
    assert.ok(validateDefinitions(defs, knownSubjects(false)).length >= 1);
    // A file definition replaces the built-in of its name: the deployment's must be the current built-in, not an older version.
    for (const builtin of BUILTIN_FLOWS) {
      const pinned = defs.find((d) => (d as { name?: unknown }).name === builtin.name);
      if (pinned) assert.deepEqual(pinned, JSON.parse(JSON.stringify(builtin)), `flows.json's ${builtin.name} is the built-in (version ${builtin.version})`);
    }
    for (const objs of Object.values(overlays)) {
      const file = (get(objs, 'ConfigMap', 'jetflow-config').data as Record<string, string>).JETFLOW_FLOWS_FILE!;
      const flows = get(objs, 'ConfigMap', 'jetflow-flows');
      assert.match(flows.metadata.name, /^jetflow-flows-[a-z0-9]{10}$/, 'a generated name: a change rolls every service');
      assert.deepEqual(JSON.parse((flows.data as Record<string, string>)['flows.json']!), defs);
      for (const s of SERVICES) {
        const w = get<Workload>(objs, 'Deployment', s);
        const vol = w.spec.template.spec.volumes?.find((v) => v.configMap?.name === flows.metadata.name);
        assert.ok(vol, `${s} mounts the flows ConfigMap`);
        const mount = container(w).volumeMounts?.find((m) => m.name === vol.name);
        assert.equal(`${mount?.mountPath}/flows.json`, file, `${s}: mounted at JETFLOW_FLOWS_FILE`);
      }
    }
  });

  test('Ingress for HTTP and gRPC to the ingest Service; /metrics is not routed', () => {
    for (const objs of Object.values(overlays)) {
      const svc = get<K8sObject & { spec: { ports: Array<{ name: string; port: number; targetPort: string }> } }>(objs, 'Service', 'ingest');
      const ingresses = objs.filter((o) => o.kind === 'Ingress') as Array<
        K8sObject & { spec: { rules: Array<{ http: { paths: Array<{ path: string; backend: { service: { name: string; port: { name: string } } } }> } }> } }
      >;
      const grpc = ingresses.filter((i) => i.metadata.annotations?.['nginx.ingress.kubernetes.io/backend-protocol'] === 'GRPC');
      assert.equal(grpc.length, 1, 'one gRPC Ingress');
      assert.equal(ingresses.length, 2);
      for (const i of ingresses) {
        for (const p of i.spec.rules.flatMap((r) => r.http.paths)) {
          assert.equal(p.backend.service.name, 'ingest');
          assert.ok(svc.spec.ports.some((sp) => sp.name === p.backend.service.port.name));
          assert.equal(p.backend.service.port.name, i === grpc[0] ? 'grpc' : 'http');
          assert.notEqual(p.path, '/metrics');
          if (i !== grpc[0]) assert.notEqual(p.path, '/', 'HTTP routes name their prefixes, so /metrics stays inside');
        }
      }
    }
  });
});

describe('NATS: three JetStream nodes, persistent, anti-affine, configured from a Secret', () => {
  test('StatefulSet of 3 with a volume claim, the monitoring port, anti-affinity, the auth Secret projected into its config', () => {
    const objs = overlays.production;
    const sts = get<Workload>(objs, 'StatefulSet', 'nats');
    assert.equal(sts.spec.replicas, 3);
    assert.equal(sts.spec.volumeClaimTemplates?.length, 1);
    const c = container(sts);
    assert.ok(c.ports?.some((p) => p.name === 'monitor' && p.containerPort === 8222));
    assert.ok(c.volumeMounts?.some((m) => m.mountPath === '/data'));
    assert.ok(sts.spec.template.spec.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.length, 'never two nodes on one machine');
    const sources = sts.spec.template.spec.volumes?.flatMap((v) => v.projected?.sources ?? []) ?? [];
    assert.ok(
      sources.some((s) => s.secret?.name === get(objs, 'Secret', 'nats-auth').metadata.name),
      'auth.conf from the Secret',
    );
    assert.ok(sources.some((s) => s.configMap?.name === get(objs, 'ConfigMap', 'nats-config').metadata.name));
  });

  test('the rendered server configuration (nats.conf + the generated auth.conf) is valid for nats-server', () => {
    const dir = mkdtempSync(join(tmpdir(), 'jetflow-natsconf-'));
    try {
      const objs = overlays.production;
      writeFileSync(join(dir, 'nats.conf'), (get(objs, 'ConfigMap', 'nats-config').data as Record<string, string>)['nats.conf']!);
      writeFileSync(join(dir, 'auth.conf'), secretData(get(objs, 'Secret', 'nats-auth'))['auth.conf']!);
      const r = spawnSync(natsServerBinary(), ['-t', '-c', join(dir, 'nats.conf')], { encoding: 'utf8', env: { ...process.env, POD_NAME: 'nats-0' } });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr + r.stdout, /configuration file .* is valid/);
      // And it can fail: a broken auth.conf.
      writeFileSync(join(dir, 'auth.conf'), 'accounts: { JETFLOW: { users: [ { user: a password: ');
      assert.throws(() => execFileSync(natsServerBinary(), ['-t', '-c', join(dir, 'nats.conf')], { env: { ...process.env, POD_NAME: 'nats-0' }, stdio: 'pipe' }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('server names, routes and NATS_URL are the StatefulSet pods behind the headless Service', () => {
    const objs = overlays.production;
    const svc = get<K8sObject & { spec: { clusterIP: string; ports: Array<{ name: string; port: number }> } }>(objs, 'Service', 'nats');
    assert.equal(svc.spec.clusterIP, 'None');
    const pods = [0, 1, 2].map((i) => `nats-${i}.nats.jetflow.svc.cluster.local`);
    const conf = (get(objs, 'ConfigMap', 'nats-config').data as Record<string, string>)['nats.conf']!;
    assert.match(conf, /^server_name: \$POD_NAME$/m, 'server name = pod name (KEDA finds a consumer leader as <server name>.<endpoint>)');
    assert.ok(container(get<Workload>(objs, 'StatefulSet', 'nats')).env?.some((e) => e.name === 'POD_NAME'));
    for (const p of pods) assert.ok(conf.includes(`nats://${p}:6222`), `route to ${p}`);
    const url = (get(objs, 'ConfigMap', 'jetflow-config').data as Record<string, string>).NATS_URL!;
    assert.deepEqual(
      url.split(','),
      pods.map((p) => `nats://${p}:4222`),
    );
    assert.equal((get(objs, 'ConfigMap', 'jetflow-config').data as Record<string, string>).JETFLOW_REPLICAS, '3');
  });
});

describe('a worker of your own (deploy/k8s/templates/worker.yaml)', () => {
  test('passes every check above once added as documented; it scales on its consumer and its NATS login may pull exactly that', () => {
    const objs = overlays.withWorker;
    const w = get<Workload>(objs, 'Deployment', 'sentiment-gpu');
    const c = container(w);
    assert.equal(w.spec.template.metadata.labels['jetflow/nats-client'], 'true', 'the NetworkPolicies let it reach NATS');
    const subjects = (envOf(c).JETFLOW_TASK_SUBJECTS ?? '').split(',');
    const so = get(objs, 'ScaledObject', 'sentiment-gpu').spec as { scaleTargetRef: { name: string }; triggers: Array<{ metadata: Record<string, string> }> };
    assert.equal(so.scaleTargetRef.name, 'sentiment-gpu');
    // Each subject's consumer and those of its priority bands (taskhigh-…, tasklow-…).
    assert.deepEqual(so.triggers.map((t) => t.metadata.consumer).sort(), subjects.flatMap((s) => CONSUMERS.taskAll(s)).sort());
    for (const t of so.triggers) {
      assert.deepEqual(validateNatsTrigger('sentiment-gpu', t.metadata), []);
      assert.equal(t.metadata.account, JETFLOW_ACCOUNT);
      assert.equal(t.metadata.stream, STREAMS.tasks);
    }
    const secret = (c.envFrom ?? []).find((e) => e.secretRef)!.secretRef!.name;
    assert.match(secret, /^worker-sentiment-gpu-secrets-[a-z0-9]{10}$/);
    const data = secretData(get(objs, 'Secret', secret));
    assert.equal(data.NATS_USER, 'worker-sentiment-gpu');
    assert.deepEqual(Object.keys(data).sort(), ['NATS_INBOX_PREFIX', 'NATS_PASSWORD', 'NATS_USER'], 'a NATS login and nothing else');
    const auth = secretData(get(objs, 'Secret', 'nats-auth'))['auth.conf']!;
    const accounts = JSON.parse(auth.slice(auth.indexOf('accounts: ') + 'accounts: '.length)) as Record<
      string,
      { users: Array<{ user: string; permissions: { publish: { allow: string[] } } }> }
    >;
    const user = accounts[JETFLOW_ACCOUNT]!.users.find((u) => u.user === 'worker-sentiment-gpu');
    assert.ok(user, 'its login is in the server config');
    // Of the task stream (it also watches the cancel flags, an ordered consumer on KV_jetflow_cancel).
    const pulls = user.permissions.publish.allow.filter((a) => a.startsWith(`$JS.API.CONSUMER.MSG.NEXT.${STREAMS.tasks}.`));
    assert.deepEqual(
      pulls,
      subjects.flatMap((s) => CONSUMERS.taskAll(s).map((c) => `$JS.API.CONSUMER.MSG.NEXT.${STREAMS.tasks}.${c}`)),
    );
    assert.ok(!user.permissions.publish.allow.some((a) => a.startsWith('$JS.API.STREAM.CREATE')), 'an outside worker provisions nothing');
  });
});

describe('NetworkPolicy: only the flows the architecture has', () => {
  type Peer = { podSelector?: { matchLabels?: Record<string, string> }; namespaceSelector?: { matchLabels?: Record<string, string> }; ipBlock?: unknown };
  type Policy = K8sObject & {
    spec: {
      podSelector: { matchLabels?: Record<string, string>; matchExpressions?: Array<{ key: string; values: string[] }> };
      policyTypes: string[];
      ingress?: Array<{ from?: Peer[]; ports?: Array<{ port: number }> }>;
      egress?: Array<{ to?: Peer[]; ports?: Array<{ port: number }> }>;
    };
  };
  const policies = () => overlays.production.filter((o) => o.kind === 'NetworkPolicy') as Policy[];
  const selects = (p: Policy, labels: Record<string, string>) =>
    matchesLabels(p.spec.podSelector.matchLabels ?? {}, labels) && (p.spec.podSelector.matchExpressions ?? []).every((e) => e.values.includes(labels[e.key] ?? ''));
  const ingressTo = (labels: Record<string, string>, port: number) =>
    policies()
      .filter((p) => selects(p, labels))
      .flatMap((p) => (p.spec.ingress ?? []).filter((r) => !r.ports || r.ports.some((x) => x.port === port)).flatMap((r) => r.from ?? [{}]));

  test('everything is denied unless allowed', () => {
    const deny = policies().find((p) => Object.keys(p.spec.podSelector).length === 0 && !p.spec.ingress && !p.spec.egress);
    assert.deepEqual(deny?.spec.policyTypes.sort(), ['Egress', 'Ingress']);
  });

  test('NATS monitoring (8222, no authentication) only from the keda and monitoring namespaces; routes only between nodes', () => {
    const nats = { 'app.kubernetes.io/name': 'nats' };
    const monitor = ingressTo(nats, 8222);
    assert.deepEqual(monitor.map((p) => p.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name']).sort(), ['keda', 'monitoring']);
    assert.ok(monitor.every((p) => !p.podSelector && !p.ipBlock));
    assert.deepEqual(ingressTo(nats, 6222), [{ podSelector: { matchLabels: nats } }]);
    assert.deepEqual(ingressTo(nats, 4222), [{ podSelector: { matchLabels: { 'jetflow/nats-client': 'true' } } }]);
  });

  test('every service is a NATS client and nothing else reaches another service', () => {
    for (const s of SERVICES) {
      const labels = get<Workload>(overlays.production, 'Deployment', s).spec.template.metadata.labels;
      assert.equal(labels['jetflow/nats-client'], 'true', `${s} may reach NATS`);
      for (const port of [8080, 50051, 9464, 9465, 9466]) {
        for (const peer of ingressTo(labels, port))
          assert.ok(peer.namespaceSelector && !peer.podSelector, `${s}:${port} is reached only from outside the namespace (ingress controller, Prometheus), never by another pod here`);
      }
    }
    const ingest = get<Workload>(overlays.production, 'Deployment', 'ingest').spec.template.metadata.labels;
    assert.deepEqual(
      ingressTo(ingest, 50051).map((p) => p.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name']),
      ['ingress-nginx'],
    );
  });
});

describe('names in the manifests are the ones the code provisions', () => {
  const allSubjects = taskSubjects(loadFlowRegistry({ JETFLOW_FLOWS_FILE: 'deploy/k8s/base/flows.json' }).defs);

  test('KEDA scales each worker Deployment on exactly the consumers it serves, in the JETFLOW account, at the NATS monitoring endpoint', () => {
    const objs = overlays.production;
    const svc = get<K8sObject & { spec: { ports: Array<{ name: string; port: number }> } }>(objs, 'Service', 'nats');
    const endpoint = `${svc.metadata.name}.${svc.metadata.namespace}.svc.cluster.local:${svc.spec.ports.find((p) => p.name === 'monitor')!.port}`;
    const covered = new Set<string>();
    for (const so of objs.filter((o) => o.kind === 'ScaledObject')) {
      const spec = so.spec as {
        scaleTargetRef: { name: string };
        minReplicaCount: number;
        maxReplicaCount: number;
        triggers: Array<{ metadata: Record<string, string> }>;
        advanced: { horizontalPodAutoscalerConfig: { behavior: { scaleDown: { stabilizationWindowSeconds: number; policies: Array<{ type: string; value: number }> } } } };
      };
      const target = get<Workload>(objs, 'Deployment', spec.scaleTargetRef.name);
      assert.equal(target.spec.replicas, undefined, `${target.metadata.name}: replicas left to the autoscaler`);
      const patterns = (envOf(container(target)).JETFLOW_TASK_SUBJECTS ?? '').split(',').filter(Boolean);
      const want = allSubjects
        .filter((s) => patterns.some((p) => subjectMatches(p, s)))
        .flatMap((s) => CONSUMERS.taskAll(s))
        .sort();
      const got = spec.triggers.map((t) => t.metadata.consumer!).sort();
      assert.deepEqual(got, want, `${so.metadata.name}: one trigger per served consumer`);
      for (const t of spec.triggers) {
        assert.equal(t.metadata.stream, STREAMS.tasks);
        assert.equal(t.metadata.account, JETFLOW_ACCOUNT, 'the account libs/security puts every stream in');
        assert.equal(t.metadata.natsServerMonitoringEndpoint, endpoint);
        assert.ok(t.metadata.activationLagThreshold !== undefined);
      }
      for (const c of got) covered.add(c);
      assert.ok(spec.minReplicaCount >= 1 && spec.maxReplicaCount > spec.minReplicaCount);
      const down = spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown;
      assert.ok(down.stabilizationWindowSeconds >= 60, 'no scale-down on a momentary dip');
      assert.ok(
        down.policies.every((p) => p.type === 'Pods' && p.value === 1),
        'scale down one pod at a time: each drains its tasks',
      );
      // The worker's NATS identity may pull from exactly these consumers.
      const data = secretData(get(objs, 'Secret', (container(target).envFrom ?? []).find((e) => e.secretRef)!.secretRef!.name));
      const auth = secretData(get(objs, 'Secret', 'nats-auth'))['auth.conf']!;
      for (const c of got) assert.ok(auth.includes(`$JS.API.CONSUMER.MSG.NEXT.${STREAMS.tasks}.${c}`), `${data.NATS_USER} may pull ${c}`);
    }
    assert.deepEqual([...covered].sort(), allSubjects.flatMap((s) => CONSUMERS.taskAll(s)).sort(), 'every task consumer scales something');
  });

  test('the lag threshold is the one derived from the measured per-pod throughput; the maximum covers a cell', () => {
    assert.equal(lagThreshold(), Math.ceil(MEASURED.real.perPodFlowsPerSec[0] * 0.5 + 4));
    for (const so of overlays.production.filter((o) => o.kind === 'ScaledObject')) {
      const spec = so.spec as { maxReplicaCount: number; triggers: Array<{ metadata: Record<string, string> }> };
      for (const t of spec.triggers) assert.equal(Number(t.metadata.lagThreshold), lagThreshold());
      assert.ok(spec.maxReplicaCount >= Math.ceil(cellCapacity() / MEASURED.real.perPodFlowsPerSec[0]), `${so.metadata.name}: max replicas serve one cell in real mode`);
      const target = get<Workload>(overlays.production, 'Deployment', (so.spec as { scaleTargetRef: { name: string } }).scaleTargetRef.name);
      assert.equal(envOf(container(target)).JETFLOW_WORKER_CONCURRENCY, '4', 'the concurrency the threshold assumes');
    }
  });

  test('docs/DEPLOYMENT.md shows the sizing table this model computes', () => {
    assert.ok(readFileSync('docs/DEPLOYMENT.md', 'utf8').includes(sizingTable()), 'regenerate with: node --import tsx scripts/deploy/sizing.ts');
  });

  test('the variables the manifests set are ones the code reads', () => {
    const sources = [
      'libs/config/src/env.ts',
      'libs/worker-service/src/config.ts',
      'libs/config/src/storage.ts',
      'libs/config/src/nats.ts',
      'libs/telemetry/src/config.ts',
      'libs/flows/src/load.ts',
      ...SERVICES.map((s) => `services/${s}/src/config.ts`),
    ]
      .filter(existsSync)
      .map((f) => readFileSync(f, 'utf8'))
      .join('\n');
    for (const objs of Object.values(overlays)) {
      const names = new Set<string>(Object.keys((get(objs, 'ConfigMap', 'jetflow-config').data as Record<string, string>) ?? {}));
      for (const s of SERVICES) {
        const c = container(get<Workload>(objs, 'Deployment', s));
        for (const e of c.env ?? []) names.add(e.name);
        for (const ref of c.envFrom ?? []) if (ref.secretRef) for (const k of Object.keys(secretData(get(objs, 'Secret', ref.secretRef.name)))) names.add(k);
      }
      for (const v of names) {
        if (/^(OTEL_|AWS_)/.test(v) || v === 'NODE_OPTIONS') continue; // read by the OpenTelemetry and AWS SDKs, and by node
        assert.ok(sources.includes(`'${v}'`), `${v} is read by some config.ts`);
      }
    }
  });
});
