"""jetflow_worker without the door: output encoding, the process pool (init once per process, soft cancel,
hard termination, errors with their codes), task declarations."""

import math
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import pool_tasks  # noqa: E402
from jetflow_worker import Context, RetryableError, TerminalError, Worker, encode_output  # noqa: E402
from jetflow_worker.pool import HardStopped, ProcessPool  # noqa: E402


class FakeNumber:
    def __init__(self, v):
        self.v = v

    def item(self):
        return self.v


class EncodeTest(unittest.TestCase):
    def test_plain_values_numpy_like_values_and_non_finite_numbers(self):
        self.assertEqual(encode_output({"a": 1, "b": [1.5, "x"]}), b'{"a": 1, "b": [1.5, "x"]}')
        self.assertEqual(encode_output({"n": FakeNumber(3)}), b'{"n": 3}')
        self.assertEqual(encode_output({"nan": math.nan, "inf": [math.inf]}), b'{"nan": null, "inf": [null]}')

    def test_an_output_that_is_not_json_is_terminal(self):
        with self.assertRaises(TerminalError) as e:
            encode_output({"o": object()})
        self.assertEqual(e.exception.code, "bad_output")


class DeclareTest(unittest.TestCase):
    def test_subjects_are_checked_and_functions_returned_unchanged(self):
        w = Worker(target="127.0.0.1:1", api_key="k" * 20)
        with self.assertRaisesRegex(ValueError, "jetflow.task.<kind>.<name>"):
            w.task("jetflow.py.profile")
        fn = w.task("jetflow.task.py.profile")(pool_tasks.echo)
        self.assertIs(fn, pool_tasks.echo)
        with self.assertRaisesRegex(ValueError, "served by two tasks"):
            w.task("jetflow.task.py.profile")
        with self.assertRaisesRegex(ValueError, "concurrency"):
            w.run(concurrency=0)


def ctx(**kw):
    info = {"assignment_id": "a1", "flow_id": "f1", "tenant": "default", "task": "t", "attempt": 2}
    info.update(kw)
    return Context(info, heartbeat=lambda: None)


class PoolTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pool = ProcessPool(2, pool_tasks.init)

    @classmethod
    def tearDownClass(cls):
        cls.pool.close()

    def test_init_runs_once_per_process_and_tasks_see_its_resources(self):
        pids = set()
        for _ in range(6):
            out = self.pool.run(pool_tasks.echo, {"items": [1, 2, 3]}, ctx().info(), ctx())
            import json

            o = json.loads(out)
            self.assertEqual(o["rows"], 3)
            self.assertEqual(o["attempt"], 2)
            self.assertEqual(o["resources"]["model"], "loaded")
            self.assertEqual(o["resources"]["loads"], 1, "init ran once in that process")
            self.assertEqual(o["resources"]["pid"], o["pid"])
            pids.add(o["pid"])
        self.assertNotIn(os.getpid(), pids, "tasks ran in pool processes")
        self.assertTrue(pids <= set(self.pool.pids))

    def test_the_soft_cancel_reaches_the_process(self):
        c = ctx()
        threading.Timer(0.3, c.cancelled.set).start()
        out = self.pool.run(pool_tasks.wait_for_cancel, {}, c.info(), c)
        self.assertEqual(out, b'{"cancelled": true}')

    def test_the_hard_stop_terminates_the_process_and_a_fresh_one_replaces_it(self):
        before = set(self.pool.pids)
        c = ctx()
        threading.Timer(0.3, c.hard_stop.set).start()
        t0 = time.monotonic()
        with self.assertRaises(HardStopped):
            self.pool.run(pool_tasks.spin, {}, c.info(), c)
        self.assertLess(time.monotonic() - t0, 5)
        after = set(self.pool.pids)
        self.assertEqual(len(after), 2)
        self.assertEqual(len(before - after), 1, "one process was replaced")
        out = self.pool.run(pool_tasks.echo, {}, ctx().info(), ctx())
        self.assertIn(b'"loads": 1', out)

    def test_errors_keep_their_kind_and_code_and_a_dead_process_is_retryable(self):
        with self.assertRaises(TerminalError) as e:
            self.pool.run(pool_tasks.terminal, {}, ctx().info(), ctx())
        self.assertEqual(e.exception.code, "bad_record")
        with self.assertRaises(RetryableError):
            self.pool.run(pool_tasks.retryable, {}, ctx().info(), ctx())
        with self.assertRaisesRegex(RetryableError, "exit"):
            self.pool.run(pool_tasks.crash, {}, ctx().info(), ctx())
        self.assertEqual(len(self.pool.pids), 2)


if __name__ == "__main__":
    unittest.main()
