// Loaded into each service with NODE_OPTIONS="--import <this file>" by `npm run bench -- --cpu-prof DIR`
// (node 20 refuses --cpu-prof in NODE_OPTIONS). Starts the V8 sampling profiler at load and writes
// DIR/CPU.<date>.<time>.<pid>.0.001.cpuprofile when the process exits (the services exit 0 after SIGTERM).
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env.JETFLOW_CPU_PROF_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.setSamplingInterval', { interval: Number(process.env.JETFLOW_CPU_PROF_INTERVAL_US || 500) });
  session.post('Profiler.enable');
  // JETFLOW_CPU_PROF_DELAY_MS: start later, so a profile of an idle stack leaves its start-up out.
  const delay = Number(process.env.JETFLOW_CPU_PROF_DELAY_MS || 0);
  if (delay > 0) setTimeout(() => session.post('Profiler.start'), delay).unref();
  else session.post('Profiler.start');
  let written = false;
  process.on('exit', () => {
    if (written) return;
    written = true;
    // The same-thread inspector session answers synchronously, so this works inside 'exit'.
    session.post('Profiler.stop', (err, res) => {
      if (err || !res) return;
      const d = new Date();
      const stamp = `${d.toISOString().slice(0, 10).replace(/-/g, '')}.${d.toTimeString().slice(0, 8).replace(/:/g, '')}`;
      writeFileSync(join(dir, `CPU.${stamp}.${process.pid}.0.001.cpuprofile`), JSON.stringify(res.profile));
    });
  });
}
