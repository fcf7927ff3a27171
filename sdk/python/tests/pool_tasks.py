"""Task functions for the pool tests: importable by the spawned pool processes."""

import os
import time

from jetflow_worker import RetryableError, TerminalError

LOADS = []


def init():
    LOADS.append(os.getpid())
    return {"model": "loaded", "pid": os.getpid(), "loads": len(LOADS)}


def echo(task_input, ctx):
    return {"pid": os.getpid(), "resources": ctx.resources, "rows": len(task_input.get("items", [])), "attempt": ctx.attempt}


def wait_for_cancel(task_input, ctx):
    ctx.heartbeat()
    if not ctx.cancelled.wait(5):
        return {"cancelled": False}
    return {"cancelled": True}


def spin(task_input, ctx):
    while True:
        time.sleep(0.01)


def terminal(task_input, ctx):
    raise TerminalError("record r1 has no text", "bad_record")


def retryable(task_input, ctx):
    raise RetryableError("the model server is down")


def crash(task_input, ctx):
    os._exit(3)
