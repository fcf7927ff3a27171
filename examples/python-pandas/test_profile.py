"""The profile task without Jetflow: python3 -m unittest test_profile (with sdk/python on PYTHONPATH)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "sdk", "python"))
sys.path.insert(0, os.path.dirname(__file__))

import pandas_profile as tasks  # noqa: E402
from jetflow_worker import Context, TerminalError, encode_output  # noqa: E402


class ProfileTest(unittest.TestCase):
    def test_profiles_the_records_and_reports_the_generators_rows(self):
        items = [{"id": f"r{i}", "text": "good service " * (i % 3 + 1), "fields": {"rating": i % 5 + 1, "amount": 10.5 * i}} for i in range(20)]
        items[3]["fields"]["amount"] = None
        ctx = Context({"flow_id": "f1", "attempt": 1}, resources=tasks.load())
        out = tasks.profile({"items": items, "deps": {"text": {"ref": "s3://b/k", "rows": 20, "bytes": 900}}, "flowInput": {"records": items}}, ctx)
        self.assertEqual(out["rows"], 20)
        self.assertIn("fields.amount", out["columns"])
        self.assertEqual(out["numeric"]["fields.rating"]["count"], 20)
        self.assertEqual(out["nulls"], {"fields.amount": 1})
        self.assertEqual(out["datasets"], {"text": {"rows": 20, "bytes": 900}})
        encode_output(out)  # JSON as it travels

    def test_records_that_are_not_objects_are_terminal(self):
        with self.assertRaises(TerminalError):
            tasks.profile({"items": [1, 2]}, Context({}))


if __name__ == "__main__":
    unittest.main()
