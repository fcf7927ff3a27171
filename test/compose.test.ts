import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Ajv } from 'ajv';
import { parse } from 'yaml';

type Service = {
  image?: string;
  build?: string | { context: string };
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
};
type Compose = { services: Record<string, Service>; volumes?: Record<string, unknown> };

const JETFLOW = ['ingest', 'orchestrator', 'dataset-generator', 'analyst'] as const;
const compose = parse(readFileSync('docker-compose.yml', 'utf8'), { merge: true }) as Compose;
const svc = (name: string) => {
  const s = compose.services[name];
  assert.ok(s, `service ${name}`);
  return s;
};

/** Every variable a service reads is read somewhere in the code (catches a typo in the compose file). */
function readByCode(variable: string): boolean {
  if (/^(OTEL_|AWS_)/.test(variable)) return true; // read by the OpenTelemetry SDK / the AWS SDK
  const files = ['libs/config/src/index.ts', 'libs/config/src/worker.ts', 'libs/telemetry/src/config.ts', 'libs/flows/src/load.ts', ...JETFLOW.map((s) => `services/${s}/src/config.ts`)];
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
    // The schema can fail: a wrong type is caught.
    assert.equal(validate({ services: { x: { ports: 'not-a-list' } } }), false);
  });

  test('a three-node JetStream cluster, each node routing to the other two', () => {
    const nodes = ['nats1', 'nats2', 'nats3'];
    for (const n of nodes) {
      const cmd = svc(n).command ?? [];
      assert.match(svc(n).image ?? '', /^nats:2\.(1[0-9])\./, 'a server version with the R3 KV fixes (2.10+)');
      assert.ok(cmd.includes('-js'), `${n} runs JetStream`);
      assert.equal(cmd[cmd.indexOf('-n') + 1], n, `${n} has its own server name`);
      assert.equal(cmd[cmd.indexOf('--cluster_name') + 1], 'jetflow');
      const routes = cmd[cmd.indexOf('--routes') + 1]!.split(',');
      assert.deepEqual(routes.sort(), nodes.filter((o) => o !== n).map((o) => `nats://${o}:6222`));
      assert.ok((svc(n).volumes ?? []).some((v) => v.endsWith(':/data')), `${n} keeps its store in a volume`);
    }
  });

  test('the four services run from one image built by the Dockerfile, wired to NATS, Jaeger and local AWS', () => {
    const dockerfile = readFileSync('Dockerfile', 'utf8');
    assert.match(dockerfile, /^FROM node:20/m);
    assert.match(dockerfile, /npm ci/);
    assert.match(dockerfile, /npm run build/);
    const images = new Set<string>();
    for (const name of JETFLOW) {
      const s = svc(name);
      images.add(`${s.image}|${typeof s.build === 'string' ? s.build : s.build?.context}`);
      assert.deepEqual(s.command, ['node', `dist/services/${name}/src/main.js`]);
      assert.ok(existsSync(`services/${name}/src/main.ts`), `${name}'s main exists`);
      const env = s.environment ?? {};
      assert.deepEqual(env.NATS_URL?.split(','), ['nats://nats1:4222', 'nats://nats2:4222', 'nats://nats3:4222']);
      assert.equal(env.OTEL_EXPORTER_OTLP_ENDPOINT, 'http://jaeger:4318');
      assert.equal(env.AWS_ENDPOINT_URL_S3, 'http://local-aws:4569');
      assert.equal(env.AWS_ENDPOINT_URL_DYNAMODB, 'http://local-aws:4567');
      for (const k of Object.keys(env)) assert.ok(readByCode(k), `${name}: ${k} is read by the code`);
    }
    assert.equal(images.size, 1, `one image: ${[...images].join(' / ')}`);
    const aws = svc('local-aws');
    assert.equal(aws.image, svc('ingest').image, 'local AWS runs in the same image');
    assert.ok(existsSync('libs/storage/src/local-aws-main.ts'));
    assert.deepEqual(aws.command?.slice(0, 2), ['node', 'dist/libs/storage/src/local-aws-main.js']);
    assert.equal(aws.command?.[aws.command.indexOf('--s3-port') + 1], '4569');
    assert.equal(aws.command?.[aws.command.indexOf('--dynamo-port') + 1], '4567');
    assert.equal(aws.command?.[aws.command.indexOf('--host') + 1], '0.0.0.0');
    assert.ok((svc('ingest').ports ?? []).includes('8080:8080'));
  });

  test('Jaeger takes OTLP; Prometheus scrapes each service where it serves /metrics; Grafana gets the dashboard', () => {
    const jaeger = svc('jaeger');
    assert.match(jaeger.image ?? '', /^jaegertracing\/all-in-one:/);
    assert.equal(jaeger.environment?.COLLECTOR_OTLP_ENABLED, 'true');
    assert.ok((jaeger.ports ?? []).some((p) => p.startsWith('4318:4318')));
    assert.ok((jaeger.ports ?? []).some((p) => p.startsWith('16686:16686')));
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
    for (const v of [...(grafana.volumes ?? []), ...(svc('prometheus').volumes ?? [])]) {
      const host = v.split(':')[0]!;
      assert.ok(existsSync(host), `${host} exists`);
    }
  });
});
