"""Serves jetflow.task.py.profile through Jetflow's gRPC worker door.

    PYTHONPATH=../../sdk/python JETFLOW_GRPC=127.0.0.1:50051 JETFLOW_WORKER_KEY=... python3 worker.py

SIGTERM or Ctrl-C drains: the tasks running get JETFLOW_DRAIN_S seconds (default 10), the rest go back.
"""

import logging
import os
import signal
import sys
import threading

from jetflow_worker import Worker

import pandas_profile as tasks

if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    w = Worker(target=os.environ.get("JETFLOW_GRPC", "127.0.0.1:50051"), api_key=os.environ["JETFLOW_WORKER_KEY"], name=os.environ.get("WORKER_NAME"), init=tasks.load)
    # process=True: pandas work runs in a pool process per slot (the hard limit terminates it).
    w.task("jetflow.task.py.profile", process=True)(tasks.profile)
    grace = float(os.environ.get("JETFLOW_DRAIN_S", "10"))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: threading.Thread(target=w.stop, args=(grace,), daemon=True).start())
    threading.Thread(target=lambda: (w.ready.wait(), print("ready", flush=True)), daemon=True).start()
    w.run(concurrency=int(os.environ.get("CONCURRENCY", "2")))
