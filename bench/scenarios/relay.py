"""Scenarios 2 and 3: the relay matrix through Postern and through Postfix,
cell by cell, and the ratio of the two."""
import contextlib

from . import harness
from .harness import NotRun, cpu_seconds, loadavg, need_file
from .limits import relay_limit
from .loadgen import lg_summary
from .report import one_line, ratio
from .servers import PostfixNode, PosternNode, SinkProc, postfix_missing, postfix_version
from .settings import RCPT_DOMAIN, SIZES


class RelayScenarios:
    """Scenarios 2 (relay) and 3 (postfix); a mixin of Bench. The relay
    cell is also scenario 4's."""

    def _relay_cell(self, system, size, per_conn, prepare=None):
        """loadgen -> system -> TLS sink. Returns the cell's numbers.
        prepare(stack) -> (yaml, routes, after_start): more Postern config,
        more route entries, and a callable run on the started node before the
        measurement (scenario 4's preload)."""
        p = self.p
        with contextlib.ExitStack() as stack:
            # --duration only guards against a forgotten sink; a preload
            # (scenario 4) can take long before the measurement starts.
            sink = SinkProc(self.workdir, tls="offer", cert=self.cert,
                            duration=p["relay_s"] + p["drain_s"] + 120 + (7200 if prepare else 0))
            stack.callback(sink.close)
            if system == "postern":
                extra, routes, after_start = prepare(stack) if prepare else ("", "", None)
                node = PosternNode(self.cert, self.workers, extra + "routes:\n" + routes +
                                   f'  - {{ domain: {RCPT_DOMAIN}, next_hop: "[127.0.0.1]:{sink.port}" }}\n')
                stack.callback(node.close)
                node.start()
                if after_start:
                    after_start(node)
            else:
                node = PostfixNode(self.cert, sink.port)
                stack.callback(node.close)
            pids = node.pids() if system == "postern" else []
            cpu_before = cpu_seconds(pids)
            r = self.loadgen.run(node.port, tls="starttls", size=size, per_conn=per_conn,
                                 messages=p["relay_msgs"], duration=p["relay_s"])
            s = lg_summary(r)
            t0, t_end = r["_wall"]
            arrived, t_drained = sink.wait_messages(s["acked"], timeout=p["drain_s"])
            cpu_used = cpu_seconds(pids) - cpu_before
            cell = {**s, "arrived": arrived, "sink_tls_handshakes": sink.stats().get("tls_handshakes"),
                    "limit": relay_limit(size, per_conn)}
            cell["of_limit"] = s["msgs_per_s"] / cell["limit"]
            if pids and s["acked"]:
                # The least noisy figure on a shared machine: what relaying
                # one message cost Postern (both hops, TLS, spool), in CPU.
                cell["cpu_us"] = 1e6 * cpu_used / s["acked"]
            if t_drained is None:
                cell["drained"] = False
                cell["note"] = (f"not drained: {arrived} of {s['acked']} at the sink after "
                                f"{p['drain_s']}s")
                cell["e2e_msgs_per_s"] = None
                cell["drain_s"] = None
                cell["log_tail"] = (node.node.logs() if system == "postern"
                                    else node.pf.log())[-3000:]
            else:
                cell["drained"] = True
                cell["e2e_msgs_per_s"] = s["acked"] / max(1e-6, t_drained - t0)
                cell["drain_s"] = max(0.0, t_drained - t_end)
                cell["e2e_of_limit"] = cell["e2e_msgs_per_s"] / cell["limit"]
            if s["acked"] == 0:
                cell["note"] = f"nothing acknowledged: {r}"
            return cell

    def _relay_matrix(self, systems):
        """Every size x messages-per-connection cell for each system; with
        two systems they alternate cell by cell, so both sides of a ratio
        are measured a few seconds apart on this shared, noisy machine."""
        rows = {system: [] for system in systems}
        for label, size in SIZES:
            for per_conn in (1, 50):
                for system in systems:
                    row = {"size": label, "per_conn": per_conn, "load": loadavg()}
                    try:
                        row.update(self._relay_cell(system, size, per_conn))
                    except NotRun:
                        raise
                    except Exception as e:  # one broken cell does not stop the rest
                        row["note"] = f"not run: {one_line(e)}"
                    rows[system].append(row)
                    self._progress(system, row)
        return rows

    RELAY_COLUMNS = [("size", "size"), ("per_conn", "msgs/conn"), ("msgs_per_s", "acked/s"),
                     ("of_limit", "of limit"), ("e2e_msgs_per_s", "end-to-end/s"),
                     ("drain_s", "drain s"), ("acked", "acked"), ("arrived", "at sink"),
                     ("p99_ms", "p99 ms"), ("limit", "limit/s"),
                     ("sink_tls_handshakes", "sink TLS sessions"), ("cpu_us", "CPU µs/msg"),
                     ("load", "load")]

    def relay(self):
        self._prereq_common()
        need_file(harness.SINK, "postern-sink")
        systems = ["postern"]
        if "postfix" in self.selected and not postfix_missing():
            systems.append("postfix")
        rows = self._relay_matrix(systems)
        if "postfix" in rows:
            self._postfix_rows = rows["postfix"]
        notes = ["acked/s: the loadgen's 250s per second; end-to-end/s: acked messages / "
                 "(last arrival at the sink - loadgen start); drain s: last arrival - last "
                 "ack", "p99: end of DATA to 250",
                 "limit: machine_limits.json relay limit (1 msg/conn: new inbound STARTTLS, "
                 "outbound reused; 50: persistent); the mix from its per-byte model",
                 "sink TLS sessions: outbound sessions the sink saw (reuse shows as few)",
                 "CPU µs/msg: user + system CPU of posternd and its workers from the "
                 "loadgen's start to the last arrival, per acked message",
                 "load: 1-minute load average when the cell started"]
        if len(systems) == 2:
            notes.append("cells alternated with scenario 3's Postfix cells")
        return {
            "title": "Scenario 2: relay loadgen -> Postern -> postern-sink, STARTTLS both hops",
            "columns": self.RELAY_COLUMNS, "rows": rows["postern"], "notes": notes,
        }

    def postfix(self):
        missing = postfix_missing()
        if missing:
            raise NotRun(missing)
        self.loadgen.help()
        need_file(harness.SINK, "postern-sink")
        rows = getattr(self, "_postfix_rows", None)
        interleaved = rows is not None
        if rows is None:
            rows = self._relay_matrix(["postfix"])["postfix"]
        postern = {(r["size"], r["per_conn"]): r
                   for r in self.results.get("relay", {}).get("rows", [])}
        for row in rows:
            ours = postern.get((row["size"], row["per_conn"]), {})
            row["postern_msgs_per_s"] = ours.get("msgs_per_s")
            row["ratio"] = ratio(ours.get("msgs_per_s"), row.get("msgs_per_s"))
            row["e2e_ratio"] = ratio(ours.get("e2e_msgs_per_s"), row.get("e2e_msgs_per_s"))
        notes = [f"Postfix {postfix_version()} (Debian), private instance: "
                 "smtpd_tls_security_level=may, smtp_tls_security_level=may, default fsync, "
                 "default concurrency and connection caching",
                 "ratio: Postern / Postfix acked/s; e2e ratio: the same end to end",
                 "each Postfix cell ran right after the same Postern cell" if interleaved else
                 "Postfix cells ran after all Postern cells"]
        if not postern:
            notes.append("scenario 2 did not run in this run: no ratios")
        return {
            "title": "Scenario 3: the same relay with Postfix in Postern's place",
            "columns": [("size", "size"), ("per_conn", "msgs/conn"), ("msgs_per_s", "acked/s"),
                        ("of_limit", "of limit"), ("e2e_msgs_per_s", "end-to-end/s"),
                        ("drain_s", "drain s"), ("acked", "acked"), ("arrived", "at sink"),
                        ("p99_ms", "p99 ms"), ("sink_tls_handshakes", "sink TLS sessions"),
                        ("load", "load"), ("postern_msgs_per_s", "Postern/s"),
                        ("ratio", "Postern/Postfix"), ("e2e_ratio", "e2e ratio")],
            "rows": rows, "notes": notes,
            **({"seconds": None, "load_before": rows[0].get("load") if rows else None}
               if interleaved else {}),
        }
