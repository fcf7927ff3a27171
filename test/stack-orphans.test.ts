import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test('services started by the supervisor stop when the supervisor is killed without stopping them', async () => {
  // A supervisor in its own process: starts nats-server and the stack, prints the service pids, waits.
  const script = `
    import { startJetflow } from '@jetflow/testing';
    const j = await startJetflow();
    console.log(JSON.stringify({ pids: j.stack.procs.map((p) => p.proc.pid), nats: j.nats.pid }));
    await new Promise(() => {});
  `;
  const sup = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let natsPid = 0;
  const pids: number[] = await new Promise((resolve, reject) => {
    sup.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (!line) return;
      const info = JSON.parse(line) as { pids: number[]; nats: number };
      natsPid = info.nats;
      resolve(info.pids);
    });
    sup.once('exit', (code) => reject(new Error(`supervisor exited early (${code})`)));
  });
  assert.equal(pids.length, 4);
  assert.ok(pids.every(alive));
  sup.kill('SIGKILL');
  const until = Date.now() + 20_000;
  while (pids.some(alive) && Date.now() < until) await sleep(100);
  const left = pids.filter(alive);
  for (const p of left) process.kill(p, 'SIGKILL');
  // The test's own nats-server is not a service: stop it here.
  if (natsPid && alive(natsPid)) process.kill(natsPid, 'SIGKILL');
  assert.deepEqual(left, [], 'no orphaned service keeps running');
});
