"""Scenarios 1 and 5: accept only (delivery held), and its scaling over
workers."""
import contextlib
import os

from .limits import accept_limit
from .loadgen import lg_summary
from .report import ratio
from .servers import PosternNode
from .settings import KB


class AcceptScenarios:
    """Scenarios 1 (accept) and 5 (scaling); a mixin of Bench."""

    def accept(self):
        self._prereq_common()
        rows = []
        for tls in ("plain", "starttls"):
            with contextlib.ExitStack() as stack:
                node = PosternNode(self.cert, self.workers, "delivery: { hold: true }\n").start()
                stack.callback(node.close)
                r = self.loadgen.run(node.port, tls=tls, size=str(KB), per_conn=50,
                                     messages=self.p["accept_msgs"], duration=self.p["accept_s"])
                s = lg_summary(r)
                spooled = node.metric("postern_messages_accepted_total")
                limit = accept_limit(str(KB), 50)
                rows.append({"tls": "plaintext" if tls == "plain" else "STARTTLS", **s,
                             "spooled": spooled, "limit": limit,
                             "of_limit": s["msgs_per_s"] / limit})
        return {
            "title": "Scenario 1: accept only (delivery held, durable 250), 1 KB, 50 msgs/conn",
            "columns": [("tls", "inbound"), ("msgs_per_s", "msgs/s"), ("of_limit", "of derived limit"),
                        ("acked", "acked"), ("rejected", "rejected"), ("failed", "failed"),
                        ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("mb_per_s", "MB/s")],
            "rows": rows,
            "notes": ["derived limit: machine_limits.json has no accept-only limit; twice the "
                      f"relay limit (one hop instead of two), {accept_limit(str(KB), 50):,.0f}/s",
                      "p50/p99: end of DATA to 250 (the durable commit)"],
        }

    # -- scenario 5 -------------------------------------------------------

    def scaling(self):
        self._prereq_common()
        cores = os.cpu_count() or 1
        rows = []
        for workers in range(1, cores + 1):
            with contextlib.ExitStack() as stack:
                node = PosternNode(self.cert, workers, "delivery: { hold: true }\n").start()
                stack.callback(node.close)
                r = self.loadgen.run(node.port, tls="starttls", size=str(KB), per_conn=50,
                                     messages=self.p["scaling_msgs"], duration=self.p["scaling_s"])
                s = lg_summary(r)
                rows.append({"workers": workers, **s, "of_limit": s["msgs_per_s"] /
                             accept_limit(str(KB), 50)})
        one = rows[0]["msgs_per_s"] or None
        for row in rows:
            row["speedup"] = ratio(row["msgs_per_s"], one)
        return {
            "title": f"Scenario 5: scaling, accept only, STARTTLS, 1 KB, 50 msgs/conn, "
                     f"workers 1..{cores}",
            "columns": [("workers", "workers"), ("msgs_per_s", "msgs/s"), ("speedup", "speedup"),
                        ("of_limit", "of derived limit"), ("p99_ms", "p99 ms"), ("acked", "acked"),
                        ("failed", "failed")],
            "rows": rows,
            "notes": ["derived limit: as in scenario 1; loadgen and Postern share "
                      f"the {cores} cores"],
        }
