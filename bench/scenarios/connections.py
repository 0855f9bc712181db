"""Scenario 6: Postern's RSS per idle TLS session."""
import contextlib
import time

from node import binary, wait_for  # noqa: E402

from .harness import need_file, rss_kb
from .idle import IdleHolder
from .limits import IDLE_SESSION_TARGET_KB
from .servers import PosternNode


class ConnectionsScenario:
    """Scenario 6 (connections); a mixin of Bench."""

    def connections(self):
        need_file(binary("posternd"), "posternd")
        n = self.p["idle"]
        with contextlib.ExitStack() as stack:
            node = PosternNode(self.cert, self.workers, "delivery: { hold: true }\n",
                               max_connections=n + 100).start()
            stack.callback(node.close)
            time.sleep(0.5)
            before = {p: rss_kb(p) for p in node.pids()}
            t0 = time.time()
            holder = IdleHolder(self.workdir, node.port, n)
            stack.callback(holder.close)
            holder.wait_established(timeout=max(60, n / 50))
            setup_s = time.time() - t0

            def all_open():
                v = node.metric("postern_connections_active")
                return v is not None and v >= n
            try:
                wait_for(all_open, timeout=30, interval=0.2, what=f"{n} active connections")
            except TimeoutError:
                pass
            time.sleep(1.0)  # let the allocator settle after the burst
            active = node.metric("postern_connections_active")
            after = {p: rss_kb(p) for p in node.pids()}
            delta = sum(after.values()) - sum(before.get(p, 0) for p in after)
            per = delta / n
            row = {"sessions": n, "active": active, "holder": holder.kind,
                   "rss_before_mb": sum(before.values()) / 1024,
                   "rss_after_mb": sum(after.values()) / 1024,
                   "kb_per_session": per, "of_target": per / IDLE_SESSION_TARGET_KB,
                   "setup_s": setup_s, "per_process_kb": {str(p): (before.get(p), after[p])
                                                          for p in after}}
        return {
            "title": f"Scenario 6: {n:,} concurrent idle TLS sessions",
            "columns": [("sessions", "sessions"), ("active", "active (metric)"),
                        ("rss_before_mb", "RSS before MB"), ("rss_after_mb", "RSS after MB"),
                        ("kb_per_session", "KB/session"),
                        ("of_target", f"of {IDLE_SESSION_TARGET_KB} KB target"),
                        ("setup_s", "setup s"), ("holder", "client")],
            "rows": [row],
            "notes": ["RSS: VmRSS of posternd and its workers (pgrep -P), sessions idle "
                      "after STARTTLS and a second EHLO"],
        }
