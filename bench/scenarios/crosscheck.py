"""Cross-check: postern-loadgen against Postfix's smtp-source on the same
plaintext targets."""
import contextlib
import os
import shutil
import time

from .harness import NotRun, pinned, run_bounded, tail
from .loadgen import lg_summary
from .servers import PostfixNode, PosternNode, SinkProc, postfix_missing
from .settings import KB, RCPT_DOMAIN


class CrosscheckScenario:
    """The cross-check of the load generator; a mixin of Bench."""

    def _smtp_source(self, port, sessions, per_conn, messages, timeout):
        """Postfix's smtp-source: msgs/s over its wall time (it prints no
        rate of its own)."""
        argv = ["smtp-source", "-s", str(sessions), "-m", str(messages), "-l", str(KB),
                "-f", "loadgen@sender.test", "-t", f"rcpt@{RCPT_DOMAIN}", f"127.0.0.1:{port}"]
        if per_conn != 1:
            argv.insert(1, "-d")  # keep the session for the next message
        log = os.path.join(self.workdir, f"smtp-source-{port}-{per_conn}.log")
        t0 = time.monotonic()
        rc = run_bounded(argv, log, timeout=timeout)
        wall = time.monotonic() - t0
        if rc != 0:
            raise RuntimeError(f"smtp-source exited {rc}: {tail(log, 800)}")
        return messages / wall

    def _crosscheck_cells(self, target, port, sessions, counts, client_cpus):
        """Both clients, alternately, two rounds each, sessions reused and a
        new connection per message; client_cpus pins the clients."""
        rows = []
        for per_conn in (0, 1):
            n = counts[per_conn]
            ours, theirs = [], []
            with pinned(client_cpus):
                for _ in range(2):
                    theirs.append(self._smtp_source(port, sessions, per_conn, n, timeout=180))
                    r = self.loadgen.run(port, tls="plain", size=str(KB), per_conn=per_conn,
                                         messages=n, duration=180, connections=sessions,
                                         extra=("--pipelining", "off", "--chunking", "off",
                                                "--to", f"rcpt@{RCPT_DOMAIN}"))
                    ours.append(lg_summary(r)["msgs_per_s"])
            a, b = sum(ours) / len(ours), sum(theirs) / len(theirs)
            rows.append({"target": target, "sessions": sessions,
                         "mode": "new connection per message" if per_conn == 1
                         else "sessions reused",
                         "messages": n, "smtp_source": b, "loadgen": a, "difference": (a - b) / b,
                         "runs": " / ".join(f"{x:,.0f} vs {y:,.0f}" for x, y in zip(ours, theirs))})
        return rows

    def crosscheck(self):
        """postern-loadgen against Postfix's smtp-source, 1 KB, one command
        at a time (smtp-source knows no PIPELINING), on two plaintext
        targets: a private Postfix pinned to CPU 0 with both clients on
        CPU 1 and enough sessions to keep it busy (the target's capacity is
        the limit), and postern-sink with a 5 ms wait before each
        end-of-data reply (sessions x 5 ms bounds the rate, and each
        client's own turnaround per command adds to every cycle)."""
        if not shutil.which("smtp-source"):
            raise NotRun("smtp-source is not installed (Debian's postfix package)")
        self.loadgen.help()
        rows = []
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2:
            with contextlib.ExitStack() as stack:
                with pinned({cpus[0]}):
                    node = PosternNode(self.cert, 1, "delivery: { hold: true }\n").start()
                    stack.callback(node.close)
                rows += self._crosscheck_cells(f"Postern, 1 worker, delivery held, on CPU {cpus[0]}; "
                                               f"clients on CPU {cpus[1]}", node.port, 50,
                                               {1: 10000, 0: 40000}, {cpus[1]})
        why = postfix_missing()
        if why:
            rows.append({"target": "Postfix smtpd", "note": f"not run: {why}"})
        elif len(cpus) < 2:
            rows.append({"target": "Postfix smtpd", "note": "not run: needs two CPUs"})
        else:
            with contextlib.ExitStack() as stack:
                with pinned({cpus[0]}):
                    sink = SinkProc(self.workdir)
                    stack.callback(sink.close)
                    pf = PostfixNode(self.cert, sink.port)
                    stack.callback(pf.close)
                rows += self._crosscheck_cells(f"Postfix smtpd on CPU {cpus[0]}, clients on "
                                               f"CPU {cpus[1]}", pf.port, 50, {1: 3000, 0: 6000},
                                               {cpus[1]})
        with contextlib.ExitStack() as stack:
            sink = SinkProc(self.workdir, extra=("--delay-ms", "5"))
            stack.callback(sink.close)
            rows += self._crosscheck_cells("postern-sink --delay-ms 5", sink.port,
                                           self.args.connections, {1: 10000, 0: 20000}, None)
        return {
            "title": "Cross-check: postern-loadgen against Postfix's smtp-source "
                     "(1 KB, no PIPELINING, closed loop)",
            "columns": [("target", "target"), ("sessions", "sessions"), ("mode", "mode"),
                        ("messages", "messages/run"), ("smtp_source", "smtp-source msgs/s"),
                        ("loadgen", "loadgen msgs/s"), ("difference", "loadgen vs smtp-source"),
                        ("runs", "runs (loadgen vs smtp-source)"), ("note", "note")],
            "rows": rows,
            "notes": ["two alternating runs per client and cell, means shown; smtp-source's "
                      "rate is messages over its wall time, the loadgen's over its own clock",
                      "smtp-source -l 1024 adds its own few header lines to the 1 KB body"],
        }
