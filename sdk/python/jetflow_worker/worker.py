"""The worker: one gRPC stream to Jetflow's worker door, tasks run in threads or pool processes."""

import json
import logging
import os
import platform
import queue
import re
import socket
import threading
import time

import grpc

from . import worker_pb2 as pb
from .context import Context, encode_output
from .errors import RetryableError, TerminalError, WorkerRefused
from .pool import HardStopped, ProcessPool

log = logging.getLogger("jetflow_worker")

VERSION = "0.1.0"

_SUBJECT = re.compile(r"^jetflow\.task\.[a-z0-9_-]+\.[a-z0-9_-]+$")
_CODE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_METHOD = "/jetflow.v1.WorkerService/Work"
# The door refused this worker: reconnecting cannot help.
_FATAL = {
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNIMPLEMENTED,
}


class _Task:
    def __init__(self, subject, fn, process):
        self.subject = subject
        self.fn = fn
        self.process = process


class _Session:
    """One stream: its outgoing queue and the assignments it holds. A result of an ended session is dropped."""

    def __init__(self):
        self.out = queue.Queue()
        self.running = {}
        self.lock = threading.Lock()
        self.closed = False

    def send(self, msg):
        if not self.closed:
            self.out.put(msg)

    def requests(self):
        while True:
            msg = self.out.get()
            if msg is None:
                return
            yield msg

    def close(self):
        self.closed = True
        self.out.put(None)


class Worker:
    """Serves Jetflow task subjects through the gRPC worker door.

    >>> w = Worker(target="127.0.0.1:50051", api_key=KEY)
    >>> @w.task("jetflow.task.py.profile")
    ... def profile(input, ctx):
    ...     return {"rows": len(input["items"])}
    >>> w.run(concurrency=2)   # blocks; w.stop() from another thread (or a signal handler) drains

    ``init`` runs once per process before its first task: in every pool process (tasks declared with
    ``process=True``) and once in this process for thread tasks; what it returns is ``ctx.resources``.
    """

    def __init__(self, target, api_key, name=None, init=None, credentials=None, reconnect=True, options=()):
        if not isinstance(target, str) or not target:
            raise TypeError("Worker: target must be the door's address, e.g. 127.0.0.1:50051")
        if not isinstance(api_key, str) or not api_key:
            raise TypeError("Worker: api_key must be a worker key (JETFLOW_WORKER_KEYS)")
        self.target = target
        self._api_key = api_key
        raw = name or f"{socket.gethostname()}-{os.getpid()}"
        self.name = re.sub(r"[^A-Za-z0-9._-]", "-", raw)[:64]
        self.init = init
        self._credentials = credentials
        self._reconnect = reconnect
        # Task inputs may be large (a flow input up to ingest's body limit plus its deps): no receive limit by default.
        self._options = [("grpc.max_receive_message_length", -1), *options]
        self._tasks = {}
        self._stopping = threading.Event()
        self._grace_ms = 10_000
        self._session = None
        self._pool = None
        self._resources = None
        self._channel = None
        self._call = None
        self.ready = threading.Event()
        #: What the door answered the last hello with: {"worker_id", "subjects", "slots"}.
        self.welcome = None

    def task(self, subject, process=False):
        """Declares the function that serves a subject: ``fn(input, ctx)`` returns a JSON-serializable output.

        ``process=True`` runs it in the worker's process pool (CPU-bound work: the hard limit terminates
        the process). The function is returned unchanged (so a pool process can import it)."""
        if not isinstance(subject, str) or not _SUBJECT.match(subject):
            raise ValueError(f"task subject {subject!r} must be jetflow.task.<kind>.<name> (lowercase letters, digits, - and _)")
        if subject in self._tasks:
            raise ValueError(f"subject {subject} is served by two tasks")

        def register(fn):
            if not callable(fn):
                raise TypeError(f"task {subject}: expected a function (input, ctx)")
            self._tasks[subject] = _Task(subject, fn, bool(process))
            return fn

        return register

    @property
    def in_flight(self):
        s = self._session
        return len(s.running) if s else 0

    @property
    def pool_pids(self):
        """The pool processes' ids (for tests and monitoring)."""
        return self._pool.pids if self._pool else []

    def stop(self, grace=10.0):
        """Drains: the door assigns nothing more, the tasks running get up to ``grace`` seconds, the rest go back. run() then returns."""
        self._grace_ms = max(0, int(grace * 1000))
        self._stopping.set()
        s = self._session
        if s is not None and not s.closed:
            s.send(pb.WorkRequest(drain=pb.WorkerDrain(grace_ms=max(1, self._grace_ms))))
        else:
            call = self._call
            if call is not None:
                call.cancel()

    def run(self, concurrency=4):
        """Connects and serves until stop(); reconnects with backoff when the stream breaks (unless reconnect=False).

        Raises WorkerRefused when the door refuses the worker (its key, a subject it may not serve)."""
        if not self._tasks:
            raise ValueError("Worker.run: declare at least one @worker.task(subject)")
        if not isinstance(concurrency, int) or not 1 <= concurrency <= 1000:
            raise ValueError(f"Worker.run: concurrency must be an integer from 1 to 1000, got {concurrency!r}")
        if any(t.process for t in self._tasks.values()):
            self._pool = ProcessPool(concurrency, self.init)
        if self.init is not None and any(not t.process for t in self._tasks.values()):
            self._resources = self.init()
        delay = 0.25
        try:
            while not self._stopping.is_set():
                started = time.monotonic()
                try:
                    self._serve(concurrency)
                    if self._stopping.is_set() or not self._reconnect:
                        return
                    log.warning("the door ended the stream; reconnecting")
                except grpc.RpcError as err:
                    code = err.code()
                    if code in _FATAL:
                        raise WorkerRefused(code.name, err.details() or "") from None
                    if self._stopping.is_set():
                        return
                    if not self._reconnect:
                        raise
                    log.warning("worker stream broke (%s: %s); reconnecting", code.name if code else "?", err.details())
                if time.monotonic() - started > 10:
                    delay = 0.25
                self._stopping.wait(delay)
                delay = min(delay * 2, 5.0)
        finally:
            if self._pool:
                self._pool.close()
                self._pool = None

    def _serve(self, concurrency):
        session = _Session()
        self._session = session
        self.ready.clear()
        session.send(pb.WorkRequest(hello=pb.WorkerHello(subjects=sorted(self._tasks), slots=concurrency, name=self.name, version=f"jetflow_worker/{VERSION} python/{platform.python_version()}")))
        if self._stopping.is_set():
            session.send(pb.WorkRequest(drain=pb.WorkerDrain(grace_ms=max(1, self._grace_ms))))
        opts = self._options
        channel = grpc.secure_channel(self.target, self._credentials, options=opts) if self._credentials else grpc.insecure_channel(self.target, options=opts)
        self._channel = channel
        try:
            stub = channel.stream_stream(_METHOD, request_serializer=pb.WorkRequest.SerializeToString, response_deserializer=pb.WorkResponse.FromString)
            call = stub(session.requests(), metadata=(("authorization", f"Bearer {self._api_key}"),))
            self._call = call
            for msg in call:
                kind = msg.WhichOneof("kind")
                if kind == "welcome":
                    self.welcome = {
                        "worker_id": msg.welcome.worker_id,
                        "subjects": list(msg.welcome.subjects),
                        "slots": msg.welcome.slots,
                        "max_message_bytes": msg.welcome.max_message_bytes,
                    }
                    log.info("serving %s with %d slots as %s", ", ".join(msg.welcome.subjects), msg.welcome.slots, msg.welcome.worker_id)
                    self.ready.set()
                elif kind == "assignment":
                    self._start(session, msg.assignment)
                elif kind == "cancel":
                    self._cancel(session, msg.cancel)
        finally:
            session.close()
            with session.lock:
                held = list(session.running.values())
            for ctx in held:
                # The door has handed these back: whatever they return now is dropped.
                ctx.cancelled.set()
                ctx.hard_stop.set()
                ctx.hard_reason = "the stream to the door ended"
            self._call = None
            self._session = None
            channel.close()

    def _start(self, session, a):
        t = self._tasks.get(a.subject)
        info = {
            "assignment_id": a.assignment_id,
            "flow_id": a.flow_id,
            "tenant": a.tenant,
            "flow": a.flow,
            "task": a.task,
            "subject": a.subject,
            "attempt": a.attempt,
            "max_attempts": a.max_attempts,
            "deadline_at_ms": a.deadline_at_ms,
            "soft_limit_ms": a.soft_limit_ms,
            "hard_limit_ms": a.hard_limit_ms,
        }
        ctx = Context(info, heartbeat=lambda: session.send(pb.WorkRequest(heartbeat=pb.TaskHeartbeat(assignment_id=a.assignment_id))), resources=self._resources)
        with session.lock:
            session.running[a.assignment_id] = ctx
        threading.Thread(target=self._run_task, args=(session, t, a, ctx), name=f"jetflow-{a.task}", daemon=True).start()

    def _run_task(self, session, t, a, ctx):
        try:
            if t is None:
                raise TerminalError(f"this worker serves no task for {a.subject}", "unknown_subject")
            try:
                task_input = json.loads(a.input_json.decode("utf-8")) if a.input_json else {}
            except ValueError as err:
                raise TerminalError(f"the task input is not JSON: {err}", "bad_input") from err
            if t.process:
                output = self._pool.run(t.fn, task_input, ctx.info(), ctx)
            else:
                output = encode_output(t.fn(task_input, ctx))
            limit = (self.welcome or {}).get("max_message_bytes") or 0
            if limit and len(output) > limit - 1024:
                # Sent anyway it would break the stream (the door refuses the message) and the task would come back forever.
                raise TerminalError(f"the task's output is {len(output)} bytes of JSON; the door takes at most {limit - 1024}", "output_too_large")
            session.send(pb.WorkRequest(result=pb.TaskSucceeded(assignment_id=a.assignment_id, output_json=output)))
        except HardStopped:
            pass  # the door already failed or cancelled it
        except TerminalError as err:
            session.send(pb.WorkRequest(failure=pb.TaskFailed(assignment_id=a.assignment_id, retryable=False, code=_code(err.code, "terminal"), message=str(err))))
        except RetryableError as err:
            session.send(pb.WorkRequest(failure=pb.TaskFailed(assignment_id=a.assignment_id, retryable=True, code=_code(err.code, "retryable"), message=str(err))))
        except Exception as err:  # noqa: BLE001 - any other failure is retried, like the TypeScript SDK's plain Error
            ctx.log.warning("task failed: %s: %s", type(err).__name__, err)
            session.send(pb.WorkRequest(failure=pb.TaskFailed(assignment_id=a.assignment_id, retryable=True, code="task_failed", message=f"{type(err).__name__}: {err}")))
        finally:
            with session.lock:
                session.running.pop(a.assignment_id, None)

    def _cancel(self, session, c):
        with session.lock:
            ctx = session.running.get(c.assignment_id)
        if ctx is None:
            return
        ctx.cancelled.set()
        if c.hard:
            ctx.hard_reason = c.reason
            ctx.hard_stop.set()


def _code(code, default):
    return code if isinstance(code, str) and _CODE.match(code) else default
