import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Ajv } from 'ajv';
import { parse } from 'yaml';
import { apiKeyEntries, sha256hex } from '../services/ingest/src/config.js';
import { composeSecrets } from '../scripts/compose-secrets.js';

type Service = {
  image?: string;
  build?: string | { context: string; target?: string };
  command?: string[];
  environment?: Record<string, string>;
  env_file?: string[];
  ports?: string[];
  volumes?: string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  read_only?: boolean;
  cap_drop?: string[];
};
type Compose = { services: Record<string, Service>; volumes?: Record<string, unknown> };

const JETFLOW = ['ingest', 'orchestrator', 'dataset-generator', 'analyst'] as const;
const NATS = ['nats1', 'nats2', 'nats3'];
const text = readFileSync('docker-compose.yml', 'utf8');
const compose = parse(text, { merge: true }) as Compose;
const svc = (name: string) => {
  const s = compose.services[name];
  assert.ok(s, `service ${name}`);
  return s;
};
const envFile = (file: string) =>
  Object.fromEntries(
    readFileSync(file, 'utf8')
      .split('\n')
      .flatMap((l) => (/^[A-Za-z0-9_][^=]*=/.test(l) ? [[l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]] : [])),
  ) as Record<string, string>;

/** Every variable a service reads is read somewhere in the code (catches a typo in the compose file). */
function readByCode(variable: string): boolean {
  if (/^(OTEL_|AWS_)/.test(variable)) return true; // read by the OpenTelemetry SDK / the AWS SDK
  const files = [
    'libs/config/src/env.ts',
    'libs/worker-service/src/config.ts',
    'libs/config/src/nats.ts',
    'libs/telemetry/src/config.ts',
    'libs/flows/src/load.ts',
    ...JETFLOW.map((s) => `services/${s}/src/config.ts`),
  ];
  return files.some((f) => existsSync(f) && readFileSync(f, 'utf8').includes(`'${variable}'`));
}

describe('docker-compose.yml', () => {
  test('is a valid Compose file (the compose-spec JSON schema, as dclint ships it)', () => {
    const req = createRequire(import.meta.url);
    const schemaPath = join(dirname(req.resolve('dclint/package.json')), 'schemas', 'compose.schema.json');
    const schema = JSON.parse(readFileSync(schemaPath, 'utf8')) as Record<string, unknown>;
    delete schema.$schema; // draft-07, Ajv's default
    const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false });
    const validate = ajv.compile(schema);
    const ok = validate(compose);
    assert.ok(ok, JSON.stringify(validate.errors, null, 2));
    // The schema can fail: a wrong type, an unknown service key.
    assert.equal(validate({ services: { x: { ports: 'not-a-list' } } }), false);
    assert.equal(validate({ services: { x: { image: 'a', restrat: 'always' } } }), false);
  });

  test('dclint reports nothing', () => {
    const r = spawnSync(process.execPath, [join('node_modules', 'dclint', 'bin', 'dclint.cjs'), 'docker-compose.yml'], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.doesNotMatch(r.stdout, /problem|error|warning/);
  });

  test('published ports bind to loopback; NATS (client, routes, unauthenticated monitoring) is not published', () => {
    for (const [name, s] of Object.entries(compose.services)) {
      for (const p of s.ports ?? []) {
        assert.match(p, /^127\.0\.0\.1:\d+:\d+$/, `${name}: ${p} binds to 127.0.0.1`);
        assert.ok(!/:(4222|6222|8222)$/.test(p), `${name}: NATS port ${p} not published`);
      }
    }
    for (const n of NATS) assert.equal(svc(n).ports, undefined);
    assert.deepEqual(svc('ingest').ports, ['127.0.0.1:8080:8080', '127.0.0.1:50051:50051']);
  });

  test('every service has a health check; the Jetflow services wait for healthy NATS nodes and local AWS', () => {
    for (const [name, s] of Object.entries(compose.services)) {
      assert.ok(s.healthcheck?.test?.length, `${name} has a healthcheck`);
      assert.equal(s.healthcheck.test[0], 'CMD', `${name}: exec form, no shell needed in the image`);
    }
    for (const name of JETFLOW) {
      const deps = svc(name).depends_on ?? {};
      for (const d of [...NATS, 'local-aws']) assert.equal(deps[d]?.condition, 'service_healthy', `${name} waits for ${d}`);
      // The slim image has no curl or wget: node itself probes /readyz or /healthz.
      assert.equal(svc(name).healthcheck?.test[1], 'node');
      assert.equal(svc(name).read_only, true, `${name}: read-only root file system`);
      assert.deepEqual(svc(name).cap_drop, ['ALL']);
    }
  });

  test("no default secrets: API keys, callback secrets, NATS logins and Grafana's password come from files the first start makes", () => {
    assert.doesNotMatch(
      text,
      /local-dev-key|local-dev-callback-secret|JETFLOW_API_KEYS|JETFLOW_CALLBACK_SECRETS|NATS_PASSWORD|GF_SECURITY_ADMIN_PASSWORD/,
      'no secret or secret variable in the compose file',
    );
    assert.match(readFileSync('.gitignore', 'utf8'), /^\.jetflow\/$/m, '.jetflow/ is git-ignored');
    const dir = mkdtempSync(join(tmpdir(), 'jetflow-compose-secrets-'));
    try {
      const first = composeSecrets(dir, ['default']);
      const files = (s: Service) => (s.env_file ?? []).map((f) => join(dir, f.replace(/^\.jetflow\/compose\//, '')));
      for (const name of JETFLOW) {
        const [f] = files(svc(name));
        assert.ok(f && existsSync(f), `${name}: its env file is made`);
        assert.equal(statSync(f).mode & 0o077, 0, `${name}: its env file is private`);
        const env = envFile(f);
        assert.ok(env.NATS_USER === name && env.NATS_PASSWORD && env.NATS_INBOX_PREFIX, `${name}: its own NATS login`);
        assert.equal('JETFLOW_API_KEYS' in env, name === 'ingest');
        assert.equal('JETFLOW_CALLBACK_SECRETS' in env, name === 'orchestrator');
        for (const k of [...Object.keys(env), ...Object.keys(svc(name).environment ?? {})]) assert.ok(readByCode(k), `${name}: ${k} is read by the code`);
      }
      const ingestEnv = envFile(join(dir, 'ingest.env'));
      assert.match(ingestEnv.JETFLOW_API_KEYS!, /^default:sha256:[0-9a-f]{64},ops:operator:sha256:[0-9a-f]{64}$/, 'ingest holds the key hashes only: a tenant key, and the operator key');
      assert.ok(first.apiKeys.default && first.apiKeys.default.length >= 32);
      // The dashboard's Consumers page and `jetflow consumers` need an operator key: tenant ops has it.
      const roles = apiKeyEntries({ JETFLOW_API_KEYS: ingestEnv.JETFLOW_API_KEYS });
      const roleOf = (t: string) => roles.find((e) => e.tenant === t && e.hash === sha256hex(first.apiKeys[t] ?? ''))?.role;
      assert.equal(roleOf('ops'), 'operator', 'the printed ops key is an operator key');
      assert.equal(roleOf('default'), 'tenant');
      assert.equal(ingestEnv.JETFLOW_OPERATOR_TENANTS, 'ops');
      const grafana = envFile(files(svc('grafana'))[0]!);
      assert.equal(grafana.GF_SECURITY_ADMIN_PASSWORD, first.grafanaPassword);
      assert.ok(first.grafanaPassword.length >= 20);
      // A second start keeps everything.
      const second = composeSecrets(dir, ['default']);
      assert.deepEqual(second, first);
      assert.ok(existsSync(join(dir, 'nats-auth.conf')));
      for (const n of NATS) assert.ok(svc(n).volumes?.includes('./.jetflow/compose/nats-auth.conf:/etc/nats/auth.conf:ro'), `${n} mounts the generated auth config`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('Grafana asks for a login: anonymous access off, sign-up off', () => {
    const env = svc('grafana').environment ?? {};
    assert.equal(env.GF_AUTH_ANONYMOUS_ENABLED, 'false');
    assert.equal(env.GF_USERS_ALLOW_SIGN_UP, 'false');
    assert.deepEqual(svc('grafana').env_file, ['.jetflow/compose/grafana.env']);
  });

  test('a three-node JetStream cluster from one config, each node with its own name and store', () => {
    const conf = readFileSync('deploy/compose/nats.conf', 'utf8');
    assert.match(conf, /^server_name: \$SERVER_NAME$/m);
    assert.match(conf, /^include \.\/auth\.conf$/m);
    assert.match(conf, /^\s*name: jetflow$/m);
    for (const n of NATS) assert.ok(conf.includes(`nats://${n}:6222`), `route to ${n}`);
    const k8sNats = readFileSync('deploy/k8s/base/nats.yaml', 'utf8').match(/image: (nats:\S+)/)![1];
    const names = new Set<string>();
    for (const n of NATS) {
      const s = svc(n);
      assert.equal(s.image, k8sNats, 'the same NATS version as deploy/k8s');
      assert.match(s.image ?? '', /^nats:2\.(1[0-9])\.\d+-alpine$/, 'a server version with the R3 KV fixes (2.10+)');
      assert.deepEqual(s.command, ['--config', '/etc/nats/nats.conf']);
      assert.ok(s.volumes?.includes('./deploy/compose/nats.conf:/etc/nats/nats.conf:ro'));
      assert.ok(
        (s.volumes ?? []).some((v) => v === `${n}:/data`),
        `${n} keeps its store in a volume`,
      );
      names.add(s.environment?.SERVER_NAME ?? '');
    }
    assert.deepEqual([...names].sort(), NATS);
  });

  test("the four services run from one image (the Dockerfile's runtime target), wired to NATS, Jaeger and local AWS", () => {
    const images = new Set<string>();
    for (const name of JETFLOW) {
      const s = svc(name);
      assert.equal(s.image, undefined, 'built, not pulled');
      assert.ok(typeof s.build === 'object');
      images.add(`${s.build.context}|${s.build.target}`);
      assert.deepEqual(s.command, ['node', `dist/services/${name}/src/main.js`]);
      const env = s.environment ?? {};
      assert.deepEqual(
        env.NATS_URL?.split(','),
        NATS.map((n) => `nats://${n}:4222`),
      );
      assert.equal(env.JETFLOW_REPLICAS, '3');
      assert.equal(env.OTEL_EXPORTER_OTLP_ENDPOINT, 'http://jaeger:4318');
      assert.equal(env.AWS_ENDPOINT_URL_S3, 'http://local-aws:4569');
      assert.equal(env.AWS_ENDPOINT_URL_DYNAMODB, 'http://local-aws:4567');
    }
    assert.deepEqual([...images], ['.|runtime'], 'one image');
    const aws = svc('local-aws');
    assert.deepEqual(aws.build, { context: '.', target: 'local-aws' }, 'local S3/DynamoDB: the dev-dependency target');
    assert.deepEqual(aws.command?.slice(0, 2), ['node', 'libs/storage/dist/local-aws-main.js']);
    assert.equal(aws.command?.[aws.command.indexOf('--s3-port') + 1], '4569');
    assert.equal(aws.command?.[aws.command.indexOf('--dynamo-port') + 1], '4567');
    assert.equal(aws.command?.[aws.command.indexOf('--host') + 1], '0.0.0.0');
    assert.equal(aws.ports, undefined, 'local AWS is reachable only inside the compose network');
  });

  test('Prometheus scrapes each service where it serves /metrics; Grafana gets the dashboard', () => {
    const jaeger = svc('jaeger');
    assert.match(jaeger.image ?? '', /^jaegertracing\/all-in-one:\d/);
    assert.equal(jaeger.environment?.COLLECTOR_OTLP_ENABLED, 'true');
    const prom = parse(readFileSync('deploy/prometheus/prometheus.yml', 'utf8')) as { scrape_configs: Array<{ job_name: string; dns_sd_configs: Array<{ names: string[]; port: number }> }> };
    for (const name of JETFLOW) {
      const job = prom.scrape_configs.find((j) => j.job_name === name);
      assert.ok(job, `a scrape job for ${name}`);
      const port = name === 'ingest' ? svc(name).environment?.JETFLOW_HTTP_PORT : svc(name).environment?.JETFLOW_METRICS_PORT;
      assert.deepEqual(job.dns_sd_configs[0]!.names, [name]);
      assert.equal(String(job.dns_sd_configs[0]!.port), port, `${name} scraped on its metrics port`);
    }
    const grafana = svc('grafana');
    assert.ok((grafana.volumes ?? []).some((v) => v.startsWith('./deploy/grafana/jetflow.json:')));
    for (const v of [...(grafana.volumes ?? []), ...(svc('prometheus').volumes ?? []), ...NATS.flatMap((n) => svc(n).volumes ?? [])]) {
      const host = v.split(':')[0]!;
      if (host.startsWith('./.jetflow/')) continue; // made by npm run compose:secrets
      if (host.startsWith('./')) assert.ok(existsSync(host), `${host} exists`);
    }
  });
});
