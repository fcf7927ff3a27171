"""The conformance behaviours (docs/WORKERS.md, "Conformance behaviours") served with jetflow_worker through
the gRPC worker door: /usr/bin/python3 test/conformance/python_worker.py with sdk/python on PYTHONPATH,
JETFLOW_GRPC (ingest's gRPC address) and JETFLOW_WORKER_KEY. Prints {"event": "ready"} once it serves."""

import json
import os
import threading
import time

from jetflow_worker import RetryableError, TerminalError, Worker


def num(v, what):
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
        raise TerminalError(f"input.{what} must be a non-negative number, got {json.dumps(v)}")
    return v


def echo(task_input, ctx):
    out = {"input": task_input["flowInput"], "task": ctx.task, "attempt": ctx.attempt}
    if task_input.get("chunk"):
        out.update(chunk=task_input["chunk"], items=task_input["items"])
    return out


def fail_retryable(task_input, ctx):
    if ctx.attempt <= num(task_input["flowInput"].get("failTimes"), "failTimes"):
        raise RetryableError(f"conformance: attempt {ctx.attempt} fails")
    return {"attempt": ctx.attempt}


def fail_terminal(task_input, ctx):
    raise TerminalError("conformance: this task always fails terminally")


def slow(task_input, ctx):
    # Ignores its soft limit on purpose: the hard limit is what stops it.
    ms = num(task_input["flowInput"].get("ms"), "ms")
    time.sleep(ms / 1000)
    return {"sleptMs": ms, "attempt": ctx.attempt}


def wait_for_cancel(task_input, ctx):
    ms = num(task_input["flowInput"].get("ms"), "ms")
    if ctx.cancelled.wait(ms / 1000):
        return {"stopped": True}
    return {"waitedMs": ms}


if __name__ == "__main__":
    w = Worker(target=os.environ["JETFLOW_GRPC"], api_key=os.environ["JETFLOW_WORKER_KEY"], name=f"conformance-{os.getpid()}")
    for subject, fn in {
        "jetflow.task.conformance.echo": echo,
        "jetflow.task.conformance.fail-retryable": fail_retryable,
        "jetflow.task.conformance.fail-terminal": fail_terminal,
        "jetflow.task.conformance.slow": slow,
        "jetflow.task.conformance.wait-for-cancel": wait_for_cancel,
    }.items():
        w.task(subject)(fn)
    threading.Thread(target=lambda: (w.ready.wait(), print(json.dumps({"event": "ready"}), flush=True)), daemon=True).start()
    w.run(concurrency=8)
