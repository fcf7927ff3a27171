"""The pandas profile analyst: a describe() of the batch's numeric fields, nulls per column, text lengths,
and what the TypeScript dataset generators of the stage before made of the same records.

Plain pandas code; jetflow_worker only calls it. Top-level functions, so the worker's pool processes can
import them (they are started with the spawn method).
"""

import os


def load():
    """The worker's init hook: runs once in every pool process before its first task (load models here)."""
    import pandas  # noqa: F401 - imported once per process, ~0.5 s

    return {"pandas": pandas.__version__, "pid": os.getpid()}


def profile(task_input, ctx):
    import pandas as pd

    items = task_input.get("items") or []
    if not isinstance(items, list) or not all(isinstance(r, dict) for r in items):
        from jetflow_worker import TerminalError

        raise TerminalError("input.records must be a list of objects", "bad_input")
    ctx.heartbeat()
    df = pd.json_normalize(items)
    numeric = df.select_dtypes("number")
    described = numeric.describe().round(4).to_dict() if not numeric.empty else {}
    text = df["text"].astype(str) if "text" in df else pd.Series(dtype=str)
    lengths = text.str.len()
    datasets = {name: {"rows": dep.get("rows"), "bytes": dep.get("bytes")} for name, dep in (task_input.get("deps") or {}).items() if isinstance(dep, dict)}
    return {
        "rows": int(len(df)),
        "columns": sorted(df.columns.tolist()),
        "numeric": described,
        "nulls": {k: int(v) for k, v in df.isna().sum().items() if v},
        "text": {"meanLength": round(float(lengths.mean()), 2) if len(lengths) else None, "maxLength": int(lengths.max()) if len(lengths) else None},
        "datasets": datasets,
        "worker": {"pandas": (ctx.resources or {}).get("pandas"), "attempt": ctx.attempt},
    }
