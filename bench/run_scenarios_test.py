#!/usr/bin/env python3
"""Checks of bench/run_scenarios.py that need no binaries: the limits file
and the limits derived from it, the command line, and that nothing points
outside the repository.

    python3 bench/run_scenarios_test.py
"""
import json
import os
import subprocess
import sys
import unittest

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)

from scenarios import limits, settings  # noqa: E402


class MachineLimitsTest(unittest.TestCase):
    def setUp(self):
        with open(limits.LIMITS_FILE) as f:
            self.data = json.load(f)

    def test_every_figure_the_code_reads_is_there_with_its_source(self):
        self.assertTrue(self.data["machine"])
        for key in ("cores", "relay_msgs_per_s", "seconds_per_byte", "idle_session_target_kb"):
            self.assertTrue(self.data[key].get("source"), key)
        for key in ("cores", "seconds_per_byte", "idle_session_target_kb"):
            self.assertGreater(self.data[key]["value"], 0, key)
        table = self.data["relay_msgs_per_s"]["by_body_bytes"]
        # The mix's model is fitted to the 1 KB row; the matrix uses 10 and 100 KB too.
        for size in (settings.KB, 10 * settings.KB, 100 * settings.KB):
            row = table[str(size)]
            self.assertGreater(row["new_inbound_starttls"], 0)
            self.assertGreater(row["persistent"], 0)

    def test_module_reads_the_file(self):
        loaded = limits.load_limits()
        self.assertEqual(loaded["cores"], limits.LIMIT_CORES)
        self.assertEqual(loaded["relay_table"], limits.RELAY_LIMIT_TABLE)
        self.assertEqual(loaded["seconds_per_byte"], limits.NS_PER_BYTE)
        self.assertEqual(loaded["idle_session_target_kb"], limits.IDLE_SESSION_TARGET_KB)

    def test_cell_limits(self):
        table = limits.RELAY_LIMIT_TABLE
        for size, (new_inbound, persistent) in table.items():
            self.assertEqual(limits.relay_limit(str(size), 1), new_inbound)
            self.assertEqual(limits.relay_limit(str(size), 50), persistent)
            self.assertEqual(limits.accept_limit(str(size), 50), 2 * persistent)
        # The 1 KB row through the model gives the row back.
        self.assertAlmostEqual(limits.relay_limit("1:1024", 50), table[settings.KB][1])
        # The mix: bigger mean body, lower limit than 1 KB, still positive.
        mix = limits.relay_limit(settings.MIX, 50)
        self.assertGreater(mix, 0)
        self.assertLess(mix, table[settings.KB][1])
        self.assertEqual(limits.mean_size(settings.MIX), 0.6 * 4096 + 0.3 * 40960 + 0.1 * 409600)


class CommandLineTest(unittest.TestCase):
    def test_help_lists_every_scenario(self):
        r = subprocess.run([sys.executable, os.path.join(BENCH, "run_scenarios.py"), "--help"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        for name in settings.SCENARIOS:
            self.assertIn(name, r.stdout)
        for flag in ("--quick", "--full", "--only", "--json", "--markdown", "--plot",
                     "--connections", "--workers", "--backlog", "--idle-sessions"):
            self.assertIn(flag, r.stdout)

    def test_nothing_points_outside_the_repository(self):
        paths = [os.path.join(BENCH, n) for n in ("run_scenarios.py", "README.md",
                                                  "machine_limits.json")]
        pkg = os.path.join(BENCH, "scenarios")
        paths += [os.path.join(pkg, n) for n in sorted(os.listdir(pkg)) if n.endswith(".py")]
        for path in paths:
            with open(path) as f:
                text = f.read()
            # Spelled in two parts so that this file does not name them.
            for needle in ("../" + "shared", "PERF-" + "FACTS"):
                self.assertNotIn(needle, text, path)


if __name__ == "__main__":
    unittest.main()
