"""jetflow_worker: Python workers for Jetflow, through the gRPC worker door (jetflow.v1.WorkerService).

Needs only grpcio and protobuf (Debian: python3-grpcio, python3-protobuf)::

    from jetflow_worker import Worker, TerminalError

    w = Worker(target="127.0.0.1:50051", api_key=KEY)

    @w.task("jetflow.task.py.profile")
    def profile(input, ctx):      # input: {items, deps, flowInput, chunk?}, the TypeScript SDK's shape
        ctx.heartbeat()           # ctx: flow_id, tenant, attempt, cancelled (an Event), log
        return {"rows": len(input["items"])}

    w.run(concurrency=2)          # blocks; w.stop() from another thread drains
"""

from .context import Context, encode_output
from .errors import RetryableError, TerminalError, WorkerRefused
from .worker import VERSION as __version__, Worker

__all__ = ["Worker", "Context", "TerminalError", "RetryableError", "WorkerRefused", "encode_output"]
