"""bench/postern-loadgen: one bounded run, and the numbers every table
shows from its report."""
import json
import os
import subprocess
import time

from . import harness
from .harness import need_file, run_bounded, tail
from .settings import RCPT_DOMAIN


class Loadgen:
    """Runs bench/postern-loadgen and reads its --json report."""

    def __init__(self, workdir, connections):
        self.workdir = workdir
        self.connections = connections
        self.runs = 0
        self._help = None

    def help(self):
        if self._help is None:
            need_file(harness.LOADGEN, "postern-loadgen")
            r = subprocess.run([harness.LOADGEN, "--help"], capture_output=True, text=True,
                               timeout=10)
            self._help = r.stdout + r.stderr
        return self._help

    def run(self, port, *, tls, size, per_conn, messages, duration, rcpt_domain=RCPT_DOMAIN,
            connections=None, rate=None, extra=()):
        """One bounded run. tls: "plain" or "starttls"; size: bytes or a mix
        spec; rate: open loop at that many msgs/s, else closed loop."""
        self.help()
        self.runs += 1
        out = os.path.join(self.workdir, f"loadgen-{self.runs}.json")
        log = os.path.join(self.workdir, f"loadgen-{self.runs}.log")
        # Full handshakes (--resume off): the limits in machine_limits.json
        # assume them, and so does a mail server's inbound traffic.
        argv = [harness.LOADGEN, "--target", f"127.0.0.1:{port}", "--mode", tls,
                "--resume", "off",
                "--connections", str(connections or self.connections),
                "--messages-per-connection", str(per_conn),
                "--messages", str(int(messages)), "--duration", f"{duration:g}",
                "--to", f"rcpt%d@{rcpt_domain}", "--from", "loadgen@sender.test",
                "--json", "--quiet"]
        argv += ["--size-mix", size] if ":" in size else ["--size", size]
        if rate:
            argv += ["--rate", f"{rate:g}"]
        argv += list(extra)
        t0 = time.time()
        rc = run_bounded(argv, log, timeout=duration + 60, stdout_path=out)
        t1 = time.time()
        try:
            with open(out) as f:
                report = json.load(f)
        except (OSError, ValueError):
            raise RuntimeError(f"postern-loadgen exited {rc} without a report: {tail(log, 1500)}")
        report["_wall"] = (t0, t1)
        report["_rc"] = rc
        return report


def lat(report, phase, pct="p99"):
    return report.get("latency_ms", {}).get(phase, {}).get(pct)


def lg_summary(report):
    """The loadgen numbers every table shows, and its whole report (JSON
    output only)."""
    rejected = report.get("rejected_total", 0)
    return {
        "loadgen": {k: v for k, v in report.items() if not k.startswith("_")},
        "sent": report.get("sent", 0),
        "acked": report.get("acknowledged", 0),
        "rejected": rejected,
        "failed": report.get("failed", 0) + report.get("not_sent", 0),
        "overdue": report.get("overdue", 0),
        "conn_errors": report.get("connection_errors", 0),
        "elapsed_s": report.get("elapsed_s", 0.0),
        "msgs_per_s": report.get("msgs_per_s", 0.0),
        "mb_per_s": report.get("mb_per_s", 0.0),
        "handshakes_per_s": report.get("handshakes_per_s", 0.0),
        "p50_ms": lat(report, "data_end_to_250", "p50"),
        "p99_ms": lat(report, "data_end_to_250", "p99"),
        "p99_msg_ms": lat(report, "message", "p99"),
    }
