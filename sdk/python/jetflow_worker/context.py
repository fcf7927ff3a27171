"""What a task gets beside its input, and how its output becomes JSON."""

import json
import logging
import math
import threading


class Context:
    """A task's context: which flow and attempt, its cancellation, its heartbeat and its log.

    ``cancelled`` (a threading.Event, or a multiprocessing one in a pool process) is set at the task's
    soft time limit and when its flow is cancelled: wrap up and return (the output of a cancelled flow is
    dropped). Past the hard limit a process-pool task's process is terminated."""

    def __init__(self, info, cancelled=None, heartbeat=None, resources=None):
        self.assignment_id = info.get("assignment_id", "")
        self.flow_id = info.get("flow_id", "")
        self.tenant = info.get("tenant", "")
        self.flow = info.get("flow", "")
        self.task = info.get("task", "")
        self.subject = info.get("subject", "")
        self.attempt = int(info.get("attempt", 1))
        self.max_attempts = int(info.get("max_attempts", 0))
        self.deadline_at_ms = int(info.get("deadline_at_ms", 0))
        self.soft_limit_ms = int(info.get("soft_limit_ms", 0))
        self.hard_limit_ms = int(info.get("hard_limit_ms", 0))
        self.cancelled = cancelled if cancelled is not None else threading.Event()
        #: Set by the door at the hard limit (the runtime has already failed or cancelled the task).
        self.hard_stop = threading.Event()
        self.hard_reason = ""
        #: What the worker's ``init`` hook returned in this process (models, clients), else None.
        self.resources = resources
        self._heartbeat = heartbeat
        self.log = logging.LoggerAdapter(logging.getLogger("jetflow_worker.task"), {"flow_id": self.flow_id, "task": self.task, "attempt": self.attempt})

    def heartbeat(self):
        """Tells the door the task is still being worked on (the door also keeps the message alive while the stream is up)."""
        if self._heartbeat is not None:
            self._heartbeat()

    def info(self):
        """The fields a pool process rebuilds the context from."""
        return {
            k: getattr(self, k)
            for k in ("assignment_id", "flow_id", "tenant", "flow", "task", "subject", "attempt", "max_attempts", "deadline_at_ms", "soft_limit_ms", "hard_limit_ms")
        }


def _default(o):
    # numpy and pandas scalars and arrays (without importing either): .item() / .tolist() / isoformat().
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "isoformat"):
        return o.isoformat()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def _finite(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_finite(v) for v in o]
    return o


def encode_output(out):
    """The output as JSON bytes (numpy/pandas values converted; NaN and infinities become null)."""
    from .errors import TerminalError

    try:
        text = json.dumps(out, default=_default, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(json.loads(json.dumps(out, default=_default))), allow_nan=False)
    except TypeError as err:
        raise TerminalError(f"the task's output is not JSON: {err}", "bad_output") from err
    return text.encode("utf-8")
