"""A pool of worker processes for CPU-bound tasks.

Each child runs the worker's ``init`` hook once when it starts (load models there), then runs one task
at a time. The soft limit and a flow's cancel set ``ctx.cancelled`` in the child (a shared Event); the
hard limit terminates the child, and a fresh one (``init`` again) takes its place. Children are started
with the ``spawn`` method (forking a process that holds gRPC threads is unsafe), so the task functions
and ``init`` must be importable: define them at the top level of a module, and start the worker under
``if __name__ == "__main__":``.
"""

import logging
import multiprocessing
import os
import queue
import signal
import threading

from .context import Context, encode_output
from .errors import RetryableError, TerminalError

log = logging.getLogger("jetflow_worker.pool")


class HardStopped(Exception):
    """The task's child process was terminated (hard limit, cancel, or the worker stopping)."""


def _child_main(conn, cancelled, init):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    resources = None
    try:
        if init is not None:
            resources = init()
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which gives up on the pool
        conn.send(("init_failed", f"{type(err).__name__}: {err}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if job is None:
            return
        fn, task_input, info = job
        ctx = Context(info, cancelled, heartbeat=lambda: conn.send(("hb",)), resources=resources)
        try:
            out = fn(task_input, ctx)
            conn.send(("ok", encode_output(out)))
        except TerminalError as err:
            conn.send(("err", False, err.code, str(err)))
        except RetryableError as err:
            conn.send(("err", True, err.code, str(err)))
        except Exception as err:  # noqa: BLE001 - any other failure is retried
            conn.send(("err", True, "task_failed", f"{type(err).__name__}: {err}"))


class _Child:
    def __init__(self, mp, init):
        self.conn, child_conn = mp.Pipe()
        self.cancelled = mp.Event()
        self.proc = mp.Process(target=_child_main, args=(child_conn, self.cancelled, init), daemon=True, name="jetflow-task")
        self.proc.start()
        child_conn.close()
        msg = self.conn.recv()
        if msg[0] == "init_failed":
            self.proc.join(5)
            raise RuntimeError(f"the init hook failed in a worker process: {msg[1]}")
        self.pid = msg[1]

    def kill(self):
        try:
            self.proc.kill()
        except Exception:  # noqa: BLE001 - already gone
            pass
        self.proc.join(5)
        self.conn.close()

    def close(self):
        try:
            self.conn.send(None)
        except Exception:  # noqa: BLE001
            pass
        self.proc.join(2)
        if self.proc.is_alive():
            self.kill()


class ProcessPool:
    """``size`` child processes; ``run`` borrows one for a task."""

    def __init__(self, size, init=None):
        self._mp = multiprocessing.get_context("spawn")
        self._init = init
        self._free = queue.Queue()
        self._all = set()
        self._lock = threading.Lock()
        self._closed = False
        for _ in range(size):
            self._add()

    @property
    def pids(self):
        with self._lock:
            return sorted(c.pid for c in self._all)

    def _add(self):
        c = _Child(self._mp, self._init)
        with self._lock:
            self._all.add(c)
        self._free.put(c)

    def _replace(self, c):
        c.kill()
        with self._lock:
            self._all.discard(c)
        if not self._closed:
            self._add()

    def run(self, fn, task_input, info, ctx):
        """Runs fn(task_input, ctx) in a child: returns the output's JSON bytes, raises what it raised.

        ctx.cancelled (set by the door: soft limit, cancel) is copied to the child; ctx.hard_stop (hard
        limit) terminates the child and raises HardStopped."""
        c = self._free.get()
        c.cancelled.clear()
        try:
            c.conn.send((fn, task_input, info))
        except Exception as err:  # noqa: BLE001 - the child died between tasks
            self._replace(c)
            raise RetryableError(f"the worker process was gone: {err}") from err
        while True:
            if ctx.hard_stop.is_set():
                log.warning("terminating worker process %s (%s)", c.pid, ctx.hard_reason or "hard stop")
                self._replace(c)
                raise HardStopped(ctx.hard_reason or "terminated")
            if ctx.cancelled.is_set() and not c.cancelled.is_set():
                c.cancelled.set()
            if not c.conn.poll(0.05):
                if not c.proc.is_alive():
                    code = c.proc.exitcode
                    self._replace(c)
                    raise RetryableError(f"the worker process exited with code {code}")
                continue
            try:
                msg = c.conn.recv()
            except (EOFError, OSError) as err:
                code = c.proc.exitcode
                self._replace(c)
                raise RetryableError(f"the worker process died (exit code {code})") from err
            if msg[0] == "hb":
                ctx.heartbeat()
                continue
            self._free.put(c)
            if msg[0] == "ok":
                return msg[1]
            _, retryable, code, message = msg
            raise (RetryableError(message, code) if retryable else TerminalError(message, code))

    def close(self):
        self._closed = True
        with self._lock:
            children = list(self._all)
            self._all.clear()
        for c in children:
            c.close()
