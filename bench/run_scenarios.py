#!/usr/bin/env python3
"""The benchmark scenarios of issue 7, each bounded in messages and time.

    python3 bench/run_scenarios.py [--quick|--full] [--only NAME...]
        [--json OUT] [--markdown OUT] [--plot DIR]

Scenarios (bench/README.md, "Scenarios"):
  accept       loadgen -> Postern with delivery held (durable 250 only)
  relay        loadgen -> Postern -> postern-sink, STARTTLS on both hops
  postfix      the relay cells with a private Postfix in Postern's place,
               and the ratio Postern / Postfix per cell
  backlog      relay 1 KB, 50/conn with N messages deferred in Postern's queue
  scaling      accept 1 KB over STARTTLS with workers 1 .. cores
  connections  N idle TLS sessions: Postern's RSS per session
  crosscheck   postern-loadgen and Postfix's smtp-source, alternately, against
               the same plaintext targets

Every result is also given as a fraction of the machine's limit from
bench/machine_limits.json (read by scenarios/limits.py). A scenario whose
prerequisite is missing (a binary not built, Postfix not installed,
delivery not working) reports "not run: <reason>" and the others still run.

Processes: every child runs in its own process group and is killed in a
finally block (SIGTERM to this script runs them too); Postern nodes and
Postfix instances come from tests/node.py and tests/postfix_instance.py and
live in temporary directories on the real disk.

This file is the command line; the scenarios, the process harness and the
report live in the scenarios/ package beside it (scenarios/__init__.py
lists its modules).
"""
import argparse
import datetime
import json
import os
import shutil
import signal
import sys
import tempfile

from scenarios.bench import Bench
from scenarios.harness import Interrupted, on_sigterm, git_commit, machine, snapshot_binaries
from scenarios.idle import hold_idle
from scenarios.limits import LIMITS_FILE, MACHINE
from scenarios.report import render_markdown
from scenarios.settings import PROFILES, SCENARIOS


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    prof = ap.add_mutually_exclusive_group()
    prof.add_argument("--quick", dest="profile", action="store_const", const="quick")
    prof.add_argument("--full", dest="profile", action="store_const", const="full")
    ap.add_argument("--only", nargs="+", choices=SCENARIOS, metavar="NAME",
                    help="run these scenarios only: " + " ".join(SCENARIOS))
    ap.add_argument("--json", metavar="OUT", help="write every number as JSON")
    ap.add_argument("--markdown", metavar="OUT", help="write tables for bench/RESULTS.md")
    ap.add_argument("--plot", metavar="DIR", help="open-loop steps of relay 1 KB: gnuplot "
                    "script, data and PNG of msgs/s and p99 against offered load")
    ap.add_argument("--connections", type=int, default=20,
                    help="concurrent loadgen connections in closed loop (default 20)")
    ap.add_argument("--workers", default="auto", help="Postern workers outside scenario 5 "
                    "(default auto: one per core)")
    ap.add_argument("--backlog", type=int, help="messages deferred in scenario 4")
    ap.add_argument("--idle-sessions", type=int, help="sessions in scenario 6")
    ap.add_argument("--hold-idle", nargs=2, metavar=("HOST:PORT", "N"), help=argparse.SUPPRESS)
    ap.set_defaults(profile="default")
    args = ap.parse_args(argv)
    if args.hold_idle:
        return hold_idle(args.hold_idle[0], int(args.hold_idle[1]))

    signal.signal(signal.SIGTERM, on_sigterm)
    names = args.only or SCENARIOS
    names = [n for n in SCENARIOS if n in names]  # dependency order: relay before postfix
    meta = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "commit": git_commit(), "machine": machine(), "profile": args.profile,
        "command": "python3 bench/run_scenarios.py " + " ".join(argv or sys.argv[1:]),
        "settings": {"connections": args.connections, "workers": args.workers,
                     "bounds": PROFILES[args.profile]},
        "limits_source": f"bench/{os.path.basename(LIMITS_FILE)} ({MACHINE})",
    }
    print(f"{meta['date']}  commit {meta['commit']}  {meta['machine']}", flush=True)
    workdir = tempfile.mkdtemp(prefix="postern-bench-")
    bench = None
    try:
        meta["binaries_built"] = snapshot_binaries(workdir)
        print("binaries built: " + (", ".join(f"{k} {v}" for k, v in
                                               meta["binaries_built"].items()) or "none"),
              flush=True)
        bench = Bench(args, workdir)
        bench.run(names)
        if args.plot:
            bench.run(["plot"])
    except (Interrupted, KeyboardInterrupt) as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return 130
    finally:
        results = bench.results if bench else {}
        if args.json:
            with open(args.json, "w") as f:
                json.dump({**meta, "scenarios": results}, f, indent=1, default=str)
        if args.markdown:
            with open(args.markdown, "w") as f:
                f.write(render_markdown(meta, results))
        if os.environ.get("POSTERN_BENCH_KEEP"):
            print(f"work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
