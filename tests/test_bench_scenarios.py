"""Runs bench/run_scenarios_test.py (the benchmark harness's checks that
need no binaries) as part of the integration suite, so CI runs them."""
import importlib.util
import os
import sys

_BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench")
sys.path.insert(0, _BENCH)
_spec = importlib.util.spec_from_file_location(
    "run_scenarios_test", os.path.join(_BENCH, "run_scenarios_test.py"))
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

for _name in dir(_module):
    _obj = getattr(_module, _name)
    if isinstance(_obj, type) and _name.endswith("Test"):
        globals()[_name] = _obj
