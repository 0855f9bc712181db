"""The benchmark scenarios behind bench/run_scenarios.py (the entry point
and its command line).

  settings      sizes, domains, bounds per profile, scenario names
  limits        bench/machine_limits.json and each cell's limit
  harness       process groups, bounded runs, /proc, binary snapshot, machine
  servers       postern-sink, Postern node, private Postfix
  loadgen       bench/postern-loadgen runs and their summaries
  idle          idle TLS sessions (scenario 6's client)
  accept, relay, backlog, connections, crosscheck, offered_load
                the scenarios, one mixin of Bench per group
  bench         Bench: runs the selected scenarios, keeps the results
  report        text and markdown tables, the gnuplot plot

Postern nodes and Postfix instances come from tests/node.py and
tests/postfix_instance.py, imported from tests/ as before the split.
"""
import os
import sys

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(BENCH)
ENTRY_POINT = os.path.join(BENCH, "run_scenarios.py")  # also runs --hold-idle
sys.path.insert(0, os.path.join(REPO, "tests"))
