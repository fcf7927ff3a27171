// Preloaded (node --import) into every service the Stack supervisor starts: when the supervisor dies
// without stopping its children (a killed test runner, a crashed launcher), the service gets SIGTERM
// and drains, instead of running on as an orphan.
const parent = Number(process.env.JETFLOW_PARENT_PID || 0);
if (parent) {
  setInterval(() => {
    if (process.ppid !== parent) process.kill(process.pid, 'SIGTERM');
  }, 1000).unref();
}
