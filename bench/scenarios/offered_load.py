"""--plot: open-loop steps of the 1 KB relay, acked msgs/s and p99 against
offered load."""
import contextlib
import os

from . import harness
from .harness import NotRun, need_file
from .loadgen import lat, lg_summary
from .report import one_line, write_plot
from .servers import PostfixNode, PosternNode, SinkProc, postfix_missing
from .settings import KB, RCPT_DOMAIN


class OfferedLoadPlot:
    """The offered-load plot (--plot); a mixin of Bench."""

    def plot(self):
        """Open-loop steps, relay 1 KB, 50 msgs/conn: acked msgs/s and p99
        against offered msgs/s, Postern (and Postfix when installed)."""
        self._prereq_common()
        need_file(harness.SINK, "postern-sink")
        outdir = self.args.plot
        os.makedirs(outdir, exist_ok=True)
        steps = [250, 500, 1000, 2000, 4000, 6000, 8000, 12000]
        if self.args.profile == "quick":
            steps = [250, 1000, 2000, 3000, 4000, 6000, 8000]
        systems = ["postern"] + ([] if postfix_missing() else ["postfix"])
        rows = []
        for system in systems:
            for rate in steps:
                row = {"system": system, "offered": rate}
                try:
                    row.update(self._open_loop_step(system, rate))
                except NotRun:
                    raise
                except Exception as e:
                    row["note"] = f"not run: {one_line(e)}"
                rows.append(row)
                self._progress(f"plot {system}", row)
                # Far past saturation nothing new is learnt.
                if row.get("msgs_per_s") and row["msgs_per_s"] < 0.5 * rate and rate >= 1000:
                    break
        files = write_plot(outdir, rows)
        notes = ["latency: intended send time to final reply (corrected for coordinated "
                 "omission); " + ", ".join(files)]
        top = max((r.get("msgs_per_s") or 0 for r in rows if r["system"] == "postern"), default=0)
        half = [r for r in rows if r["system"] == "postern" and r.get("p99_ms") is not None
                and r["offered"] <= top / 2]
        if half:
            r = half[-1]
            notes.append(f"Postern at about half its highest acknowledged rate ({top:,.0f}/s): "
                         f"offered {r['offered']:,}/s, p99 end of DATA to 250 = "
                         f"{r['p99_ms']:.2f} ms (target <= 5 ms)")
        return {
            "title": "Offered load, relay 1 KB, 50 msgs/conn, STARTTLS both hops (open loop)",
            "columns": [("system", "system"), ("offered", "offered/s"), ("msgs_per_s", "acked/s"),
                        ("p50_msg_ms", "p50 ms"), ("p99_msg_ms", "p99 ms"),
                        ("p99_ms", "p99 DATA→250 ms"), ("overdue", "overdue"),
                        ("failed", "failed")],
            "rows": rows, "notes": notes,
        }

    def _open_loop_step(self, system, rate):
        p = self.p
        with contextlib.ExitStack() as stack:
            sink = SinkProc(self.workdir, tls="offer", cert=self.cert, duration=p["step_s"] + 300)
            stack.callback(sink.close)
            if system == "postern":
                node = PosternNode(self.cert, self.workers, "routes:\n"
                                   f'  - {{ domain: {RCPT_DOMAIN}, next_hop: "[127.0.0.1]:{sink.port}" }}\n').start()
            else:
                node = PostfixNode(self.cert, sink.port)
            stack.callback(node.close)
            r = self.loadgen.run(node.port, tls="starttls", size=str(KB), per_conn=50,
                                 messages=rate * p["step_s"], duration=p["step_s"], rate=rate,
                                 connections=max(self.args.connections, 64))
            s = lg_summary(r)
            s["p50_msg_ms"] = lat(r, "message", "p50")
            return s
