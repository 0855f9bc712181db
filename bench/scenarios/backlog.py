"""Scenario 4: the relay cell with a deferred backlog in Postern's queue,
beside the same cell on an empty queue."""
import time

from node import wait_for  # noqa: E402

from . import harness
from .harness import need_file
from .report import ratio
from .servers import SinkProc
from .settings import BACKLOG_DOMAIN, KB


class BacklogScenario:
    """Scenario 4 (backlog); a mixin of Bench, on RelayScenarios' cell."""

    def backlog(self):
        self._prereq_common()
        need_file(harness.SINK, "postern-sink")
        n = self.p["backlog"]
        preload = {}

        def prepare(stack):
            plain = SinkProc(self.workdir, duration=n / 50 + 3600)
            stack.callback(plain.close)
            # Preload with a high destination concurrency (each deferral is
            # a connection to the plain sink), then restart with defaults
            # for the measurement: the deferred messages come back from the
            # spool with their retry times.
            measured = "delivery: { retry_schedule: [1h] }\n"
            preloading = "delivery: { retry_schedule: [1h], destination_concurrency: 400 }\n"
            yaml = (preloading +
                    f"partners:\n  - {{ domain: {BACKLOG_DOMAIN}, outbound: {{ tls: require }} }}\n")
            routes = f'  - {{ domain: {BACKLOG_DOMAIN}, next_hop: "[127.0.0.1]:{plain.port}" }}\n'

            def deferred_at_least(node):
                v = node.metric("postern_queue_deferred_messages")
                return v is not None and v >= n

            def wait_deferred(node, timeout, what):
                try:
                    wait_for(lambda: deferred_at_least(node), timeout=timeout, interval=0.5,
                             what=what)
                except TimeoutError:
                    raise RuntimeError(
                        f"{what}: postern_queue_deferred_messages="
                        f"{node.metric('postern_queue_deferred_messages')} of {n} after "
                        f"{timeout:.0f}s") from None

            def preload_queue(node):
                t0 = time.time()
                left = n
                while left > 0:
                    r = self.loadgen.run(node.port, tls="plain", size=str(KB), per_conn=50,
                                         messages=left, duration=min(540, max(30, n / 200)),
                                         rcpt_domain=BACKLOG_DOMAIN)
                    if r.get("acknowledged", 0) == 0:
                        raise RuntimeError(f"preload: nothing acknowledged ({r.get('rejected')})")
                    left -= r["acknowledged"]
                preload["accept_s"] = time.time() - t0
                wait_deferred(node, max(120, n / 100), "preload")
                preload["deferred_s"] = time.time() - t0
                preload["plain_sink_messages"] = plain.messages()
                # Restart with the measured configuration.
                t1 = time.time()
                node.node.stop(timeout=30)
                with open(node.node.config_path) as f:
                    config = f.read()
                with open(node.node.config_path, "w") as f:
                    f.write(config.replace(preloading, measured))
                node.node.start(wait_ready=False)
                wait_for(node.node.ready, timeout=max(60, n / 1000), what="node ready after restart")
                wait_deferred(node, max(60, n / 1000), "after restart")
                preload["restart_s"] = time.time() - t1
                preload["queue_messages"] = node.metric("postern_queue_messages")
                preload["rss_kb"] = node.rss_kb()
            return yaml, routes, preload_queue

        # The baseline runs right before the backlog cell (same load on
        # this shared machine); scenario 2's cell is shown beside it.
        s2 = next((r for r in self.results.get("relay", {}).get("rows", [])
                   if r["size"] == "1 KB" and r["per_conn"] == 50 and r.get("msgs_per_s")), {})
        base = self._relay_cell("postern", str(KB), 50)
        cell = self._relay_cell("postern", str(KB), 50, prepare=prepare)
        row = {"backlog": n, **cell, "preload_s": preload.get("deferred_s"),
               "restart_s": preload.get("restart_s"),
               "plain_sink_messages": preload.get("plain_sink_messages"),
               "rss_mb": (preload.get("rss_kb") or 0) / 1024,
               "base_msgs_per_s": base.get("msgs_per_s"),
               "base_e2e_msgs_per_s": base.get("e2e_msgs_per_s"),
               "relative": ratio(cell.get("msgs_per_s"), base.get("msgs_per_s")),
               "e2e_relative": ratio(cell.get("e2e_msgs_per_s"), base.get("e2e_msgs_per_s")),
               "s2_msgs_per_s": s2.get("msgs_per_s"),
               "s2_relative": ratio(cell.get("msgs_per_s"), s2.get("msgs_per_s"))}
        return {
            "title": f"Scenario 4: relay 1 KB, 50 msgs/conn with {n:,} messages deferred in the queue",
            "columns": [("backlog", "deferred"), ("msgs_per_s", "acked/s"),
                        ("base_msgs_per_s", "without/s"), ("relative", "relative"),
                        ("e2e_msgs_per_s", "end-to-end/s"), ("e2e_relative", "e2e relative"),
                        ("s2_msgs_per_s", "scenario 2/s"), ("s2_relative", "vs scenario 2"),
                        ("p99_ms", "p99 ms"), ("preload_s", "preload s"),
                        ("restart_s", "restart s"), ("rss_mb", "RSS MB")],
            "rows": [row],
            "notes": ["without: the same cell on a fresh node with an empty queue, run just "
                      "before; target: relative >= 0.90",
                      f"backlog: {BACKLOG_DOMAIN} under tls: require routed to a sink without "
                      "STARTTLS, retry_schedule [1h] so no retry falls inside the measurement; "
                      "preloaded with destination_concurrency 400, then posternd restarted "
                      "with the default and the messages reloaded from the spool",
                      "preload s: accepting the backlog until all are deferred; restart s: "
                      "posternd restart until the deferred gauge shows them again"],
            "preload": preload,
        }
