#!/usr/bin/env python3
"""A/B of two Postern builds on the relay cells that matter for a change:
the same load generator and sink, the two builds' posternd and workers
alternately, cell by cell (A B in odd rounds, B A in even ones so neither
always runs first), Postern's CPU per relayed message beside msgs/s.

    python3 bench/ab_relay.py --a DIR --b DIR [--rounds 2] [--workers 1]
        [--cells "1 KB:50,100 KB:50"] [--quick|--full] [--json OUT]

DIR holds the binaries laid out as bazel-bin does (cmd/posternd/posternd,
cmd/postern-worker/postern-worker); the load generator and the sink come
from POSTERN_BIN (default bazel-bin) for both sides. Every cell is scenario
2's relay cell (STARTTLS both hops), bounded as the profile says.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import scenarios  # noqa: E402,F401  (puts tests/ on sys.path)
import node as node_module  # noqa: E402
from scenarios.bench import Bench  # noqa: E402
from scenarios.harness import git_commit, machine, snapshot_binaries  # noqa: E402
from scenarios.settings import SIZES  # noqa: E402


def parse_cells(text):
    sizes = dict(SIZES)
    cells = []
    for part in text.split(","):
        name, per_conn = part.rsplit(":", 1)
        name = name.strip()
        if name not in sizes:
            raise SystemExit(f"unknown size {name!r}: one of {', '.join(sizes)}")
        cells.append((name, sizes[name], int(per_conn)))
    return cells


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="binaries of build A")
    ap.add_argument("--b", required=True, help="binaries of build B")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", default="1")
    ap.add_argument("--cells", default="1 KB:50,100 KB:50")
    ap.add_argument("--connections", type=int, default=20)
    prof = ap.add_mutually_exclusive_group()
    prof.add_argument("--quick", dest="profile", action="store_const", const="quick")
    prof.add_argument("--full", dest="profile", action="store_const", const="full")
    ap.add_argument("--json", metavar="OUT")
    ap.set_defaults(profile="default")
    args = ap.parse_args(argv)
    args.backlog = None
    args.idle_sessions = None
    cells = parse_cells(args.cells)
    builds = {"A": os.path.abspath(args.a), "B": os.path.abspath(args.b)}
    for label, path in builds.items():
        if not os.access(os.path.join(path, "cmd/posternd/posternd"), os.X_OK):
            raise SystemExit(f"{label}: no cmd/posternd/posternd in {path}")

    workdir = tempfile.mkdtemp(prefix="postern-ab-")
    runs = []
    try:
        snapshot_binaries(workdir)  # the loadgen and sink, shared by both sides
        bench = Bench(args, workdir)
        for rnd in range(1, args.rounds + 1):
            order = ["A", "B"] if rnd % 2 else ["B", "A"]
            for name, size, per_conn in cells:
                for label in order:
                    node_module.BIN = builds[label]
                    cell = bench._relay_cell("postern", size, per_conn)
                    row = {"round": rnd, "build": label, "size": name, "per_conn": per_conn,
                           "cpu_us": cell.get("cpu_us"), "msgs_per_s": cell.get("msgs_per_s"),
                           "p99_ms": cell.get("p99_ms")}
                    runs.append(row)
                    print(f"round {rnd} {label} {name} x{per_conn}: "
                          f"{row['cpu_us'] or 0:.0f} us/msg, {row['msgs_per_s']:.0f} msgs/s",
                          flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print("| cell | A µs/msg | B µs/msg | B/A | A msgs/s | B msgs/s |")
    print("|---|---|---|---|---|---|")
    summary = []
    for name, _, per_conn in cells:
        def pick(label, key):
            return [r[key] for r in runs if r["build"] == label and r["size"] == name
                    and r["per_conn"] == per_conn and r[key] is not None]
        a_cpu, b_cpu = pick("A", "cpu_us"), pick("B", "cpu_us")
        a_rate, b_rate = pick("A", "msgs_per_s"), pick("B", "msgs_per_s")
        ratio = statistics.mean(b_cpu) / statistics.mean(a_cpu) if a_cpu and b_cpu else None
        summary.append({"size": name, "per_conn": per_conn, "a_cpu_us": a_cpu, "b_cpu_us": b_cpu,
                        "a_msgs_per_s": a_rate, "b_msgs_per_s": b_rate, "b_over_a": ratio})
        print(f"| {name}, {per_conn}/conn | {' / '.join(f'{v:.0f}' for v in a_cpu)} | "
              f"{' / '.join(f'{v:.0f}' for v in b_cpu)} | "
              f"{ratio:.2f} | {' / '.join(f'{v:,.0f}' for v in a_rate)} | "
              f"{' / '.join(f'{v:,.0f}' for v in b_rate)} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"commit": git_commit(), "machine": machine(), "profile": args.profile,
                       "workers": args.workers, "builds": builds, "runs": runs,
                       "summary": summary}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
