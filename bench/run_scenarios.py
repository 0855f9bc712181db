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
../shared/PERF-FACTS.md (LIMITS below). A scenario whose prerequisite is
missing (a binary not built, Postfix not installed, delivery not working)
reports "not run: <reason>" and the others still run.

Processes: every child runs in its own process group and is killed in a
finally block (SIGTERM to this script runs them too); Postern nodes and
Postfix instances come from tests/node.py and tests/postfix_instance.py and
live in temporary directories on the real disk.
"""
import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

import node as node_module  # noqa: E402
from node import BIN, Node, binary, free_port, wait_for  # noqa: E402
from tls_helpers import make_client_cert  # noqa: E402

LOADGEN = os.environ.get("POSTERN_LOADGEN") or os.path.join(BIN, "bench/postern-loadgen")
SINK = os.path.join(BIN, "bench/postern-sink")

KB = 1024
MIX = "60:4096,30:40960,10:409600"
SIZES = [("1 KB", str(KB)), ("10 KB", str(10 * KB)), ("100 KB", str(100 * KB)), ("mix", MIX)]
RCPT_DOMAIN = "bench.test"        # routed to the TLS sink
BACKLOG_DOMAIN = "backlog.test"   # routed to a plaintext sink under tls: require

# Bounds per profile: messages and seconds per loadgen run, seconds to wait
# for the sink to see everything, backlog size, idle sessions, seconds per
# open-loop step.
PROFILES = {
    "quick": dict(accept_msgs=150000, accept_s=6, relay_msgs=80000, relay_s=6, drain_s=60,
                  backlog=20000, scaling_msgs=150000, scaling_s=6, idle=2000, step_s=3),
    "default": dict(accept_msgs=500000, accept_s=15, relay_msgs=300000, relay_s=15, drain_s=180,
                    backlog=20000, scaling_msgs=500000, scaling_s=15, idle=10000, step_s=5),
    "full": dict(accept_msgs=1500000, accept_s=30, relay_msgs=800000, relay_s=30, drain_s=600,
                 backlog=1000000, scaling_msgs=1500000, scaling_s=30, idle=10000, step_s=8),
}

SCENARIOS = ["accept", "relay", "postfix", "backlog", "scaling", "connections", "crosscheck"]
TITLES = {
    "accept": "Scenario 1: accept only",
    "relay": "Scenario 2: relay through Postern",
    "postfix": "Scenario 3: relay through Postfix",
    "backlog": "Scenario 4: relay with a deferred backlog",
    "scaling": "Scenario 5: scaling over workers",
    "connections": "Scenario 6: idle TLS sessions",
    "crosscheck": "Cross-check: postern-loadgen against smtp-source",
    "plot": "Offered load plot",
}

# --------------------------------------------------------------------------
# Limits (../shared/PERF-FACTS.md, measured on the 2-vCPU VM)
# --------------------------------------------------------------------------

LIMIT_CORES = 2
# Relay limit, msgs/s: (new STARTTLS inbound per message with outbound
# connections reused, persistent TLS sessions on both hops), by body size.
RELAY_LIMIT_TABLE = {KB: (1900, 11900), 10 * KB: (1850, 9600), 100 * KB: (1500, 3250)}
NS_PER_BYTE = 4.4e-9
IDLE_SESSION_TARGET_KB = 40


def mean_size(spec):
    """Mean body size of "1024" or "60:4096,30:40960,..."."""
    if ":" not in spec:
        return int(spec)
    parts = [tuple(int(x) for x in p.split(":")) for p in spec.split(",")]
    return sum(w * s for w, s in parts) / sum(w for w, _ in parts)


def relay_limit(spec, per_conn):
    """msgs/s a relay could reach on the limit machine. The table's sizes
    come from PERF-FACTS; other sizes (the mix) use its model, CPU per
    message = fixed part + 4.4 ns per byte, with the fixed part fitted to
    the 1 KB row (2 cores / limit - 4.4 ns x 1 KB)."""
    persistent = per_conn >= 50
    if ":" not in spec and int(spec) in RELAY_LIMIT_TABLE:
        return RELAY_LIMIT_TABLE[int(spec)][1 if persistent else 0]
    base = LIMIT_CORES / RELAY_LIMIT_TABLE[KB][1 if persistent else 0] - NS_PER_BYTE * KB
    return LIMIT_CORES / (base + NS_PER_BYTE * mean_size(spec))


def accept_limit(spec, per_conn):
    """PERF-FACTS has no accept-only limit; this derives one: a single hop
    costs half the relay's per-message CPU (one client, one server instead
    of two of each). An estimate, labelled as such in every table."""
    return 2 * relay_limit(spec, per_conn)


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------


class Interrupted(BaseException):
    pass


def _on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup
    raise Interrupted(f"signal {signum}")


def kill_group(proc, grace=3.0):
    """SIGTERM to the process group, SIGKILL after `grace` seconds."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(path, n=2000):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pids):
    """User + system CPU seconds of the given processes (all their threads)
    so far; a process that is gone counts 0."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


class NotRun(Exception):
    """A prerequisite is missing; the message says which."""


def need_file(path, what):
    if not os.access(path, os.X_OK):
        raise NotRun(f"{what} not built (bazel-bin/{os.path.relpath(path, node_module.BIN)})")


BINARIES = ["cmd/posternd/posternd", "cmd/postern-worker/postern-worker", "bench/postern-sink",
            "bench/postern-loadgen"]


def snapshot_binaries(workdir):
    """Copies the built binaries into the work dir and runs those: others
    rebuild bazel-bin on this machine, and a binary replaced (or briefly
    missing) in the middle of a run would mix two builds in one table.
    posternd finds postern-worker at ../postern-worker/ beside itself.
    Returns {binary: build time} of what was copied."""
    global LOADGEN, SINK
    dst = os.path.join(workdir, "bin")
    built = {}
    for rel in BINARIES:
        src = LOADGEN if rel.endswith("postern-loadgen") else os.path.join(BIN, rel)
        if not os.access(src, os.X_OK):
            continue
        os.makedirs(os.path.dirname(os.path.join(dst, rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dst, rel))
        built[os.path.basename(rel)] = datetime.datetime.fromtimestamp(
            os.stat(src).st_mtime).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    node_module.BIN = dst
    LOADGEN = os.path.join(dst, "bench/postern-loadgen")
    SINK = os.path.join(dst, "bench/postern-sink")
    return built


class SinkProc:
    """postern-sink on a free loopback port; stats polled from its file.

    A sampler thread records every rewrite of the stats file (about one a
    second) with the file's mtime, so the moment the N-th message arrived
    can be interpolated between two samples instead of rounded to a
    second."""

    def __init__(self, workdir, tls=None, cert=None, duration=900, extra=()):
        self.port = free_port()
        self.stats_path = os.path.join(workdir, f"sink-{self.port}.json")
        self.log_path = os.path.join(workdir, f"sink-{self.port}.log")
        argv = [SINK, "--listen", f"127.0.0.1:{self.port}", "--stats", self.stats_path,
                "--duration", str(int(duration)), "--hostname", f"sink-{self.port}.bench.test",
                *extra]
        if tls:
            argv += ["--tls", tls, "--cert", cert[0], "--key", cert[1]]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.samples = []  # (mtime, stats dict)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        try:
            wait_for(self._listening, timeout=10, what="postern-sink listening")
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _listening(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"postern-sink exited {self.proc.returncode}: {tail(self.log_path)}")
        return "postern-sink listening on" in tail(self.log_path)

    def _read(self):
        try:
            mtime = os.stat(self.stats_path).st_mtime
            with open(self.stats_path) as f:
                return mtime, json.load(f)
        except (OSError, ValueError):
            return None

    def _sample(self):
        last = None
        while not self._stop.is_set():
            s = self._read()
            if s and s[0] != last:
                last = s[0]
                with self._lock:
                    self.samples.append(s)
            self._stop.wait(0.02)

    def stats(self):
        with self._lock:
            return dict(self.samples[-1][1]) if self.samples else {}

    def messages(self):
        return self.stats().get("messages", 0)

    def wait_messages(self, n, timeout):
        """Waits until the sink counted n messages. Returns (count, t) where t
        is the interpolated wall time of the n-th arrival, or None on
        timeout."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            with self._lock:
                samples = list(self.samples)
            if samples and samples[-1][1].get("messages", 0) >= n:
                return samples[-1][1]["messages"], self._interpolate(samples, n)
            time.sleep(0.05)
        return self.messages(), None

    @staticmethod
    def _interpolate(samples, n):
        """The wall time the n-th message arrived. The stats file is only
        rewritten once a second and the count stops at n, so a straight
        line between the samples around n would say "at the later sample".
        Instead the arrival rate of the second before is carried forward
        from the last sample below n (never past the first sample at n)."""
        j = next(i for i, (_, s) in enumerate(samples) if s.get("messages", 0) >= n)
        t2, m2 = samples[j][0], samples[j][1]["messages"]
        if j == 0:
            return t2
        t1, m1 = samples[j - 1][0], samples[j - 1][1].get("messages", 0)
        estimate = t1 + (t2 - t1) * (n - m1) / max(1, m2 - m1)
        if j >= 2:
            t0, m0 = samples[j - 2][0], samples[j - 2][1].get("messages", 0)
            if m1 > m0 and t1 > t0:
                estimate = min(estimate, t1 + (n - m1) * (t1 - t0) / (m1 - m0))
        return estimate

    def close(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        kill_group(self.proc)
        self._log.close()


class PosternNode:
    """A posternd node (tests/node.py) with one STARTTLS-offering listener
    using the benchmark's ECDSA certificate."""

    def __init__(self, cert, workers="auto", extra_yaml="", max_connections=None):
        limits = "limits: { max_message_size: 50MB"
        if max_connections:
            limits += f", max_connections: {max_connections}, max_connections_per_ip: {max_connections}"
        limits += " }\n"
        tls_yaml = (f'tls:\n  certificates:\n    - {{ name: bench, cert_file: "{cert[0]}", '
                    f'key_file: "{cert[1]}" }}\n')
        self.node = Node(workers=workers, listeners={"mx": "tls: offer, auth: none"},
                         relay_yaml=f"  accepted_domains: [{RCPT_DOMAIN}]\n"
                                    "  trusted_networks: [127.0.0.0/8]\n",
                         extra_yaml=tls_yaml + limits + extra_yaml, drain_timeout="2s")
        self.port = self.node.smtp_port

    def start(self):
        try:
            self.node.start()
        except BaseException:
            self.close()
            raise
        return self

    def pids(self):
        return [self.node.proc.pid] + self.node.worker_pids()

    def rss_kb(self):
        return sum(rss_kb(p) for p in self.pids())

    def metric(self, name, labels=""):
        try:
            return self.node.metric(name, labels)
        except (AssertionError, ValueError):
            return None

    def close(self):
        try:
            self.node.stop(timeout=10)
        except Exception:
            pass
        finally:
            self.node.close()


class PostfixNode:
    """A private Postfix (tests/postfix_instance.py) relaying everything to
    the sink: smtpd TLS "may" with the benchmark certificate, smtp client
    TLS "may", Postfix's default fsync behaviour and concurrency."""

    def __init__(self, cert, relay_port):
        from postfix_instance import PostfixInstance
        self.pf = PostfixInstance(relay_port, tls_level="may", extra_main_cf={
            "smtpd_tls_security_level": "may",
            "smtpd_tls_cert_file": cert[0],
            "smtpd_tls_key_file": cert[1],
            "smtp_tls_loglevel": "0",
        })
        self.port = self.pf.port

    def close(self):
        self.pf.close()


def postfix_version():
    try:
        out = subprocess.run(["postconf", "-d", "mail_version"], capture_output=True, text=True,
                             timeout=10).stdout
        return out.split("=", 1)[1].strip()
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def postfix_missing():
    if not shutil.which("postfix") and not os.path.exists("/usr/sbin/postfix"):
        return "Postfix is not installed (tools/setup.sh installs Debian's postfix)"
    if os.geteuid() != 0:
        return "a private Postfix needs root (its master runs as root)"
    return None


# --------------------------------------------------------------------------
# The load generator
# --------------------------------------------------------------------------


class Loadgen:
    """Runs bench/postern-loadgen and reads its --json report."""

    def __init__(self, workdir, connections):
        self.workdir = workdir
        self.connections = connections
        self.runs = 0
        self._help = None

    def help(self):
        if self._help is None:
            need_file(LOADGEN, "postern-loadgen")
            r = subprocess.run([LOADGEN, "--help"], capture_output=True, text=True, timeout=10)
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
        # Full handshakes (--resume off): the limits in PERF-FACTS assume
        # them, and so does a mail server's inbound traffic.
        argv = [LOADGEN, "--target", f"127.0.0.1:{port}", "--mode", tls, "--resume", "off",
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


def run_bounded(argv, log_path, timeout, stdout_path=None):
    """Runs argv in its own process group, stderr (and stdout unless
    stdout_path) to log_path; kills the group if it outlives timeout."""
    with contextlib.ExitStack() as files:
        log = files.enter_context(open(log_path, "wb"))
        out = files.enter_context(open(stdout_path, "wb")) if stdout_path else log
        proc = subprocess.Popen(argv, stdout=out, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{os.path.basename(argv[0])} ran past {timeout:g}s: "
                               f"{tail(log_path, 800)}") from None
        finally:
            kill_group(proc)


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


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------


class Bench:
    def __init__(self, args, workdir):
        self.args = args
        self.p = dict(PROFILES[args.profile])
        if args.backlog:
            self.p["backlog"] = args.backlog
        if args.idle_sessions:
            self.p["idle"] = args.idle_sessions
        self.workdir = workdir
        self.cert = make_client_cert(workdir, "mx.bench.test")[:2]
        self.loadgen = Loadgen(workdir, args.connections)
        self.results = {}
        self.workers = args.workers

    def _prereq_common(self):
        need_file(binary("posternd"), "posternd")
        self.loadgen.help()

    # -- scenario 1 -------------------------------------------------------

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
            "notes": ["derived limit: PERF-FACTS has no accept-only limit; twice the relay "
                      f"limit (one hop instead of two), {accept_limit(str(KB), 50):,.0f}/s",
                      "p50/p99: end of DATA to 250 (the durable commit)"],
        }

    # -- scenarios 2 and 3 ------------------------------------------------

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
        need_file(SINK, "postern-sink")
        systems = ["postern"]
        if "postfix" in self.selected and not postfix_missing():
            systems.append("postfix")
        rows = self._relay_matrix(systems)
        if "postfix" in rows:
            self._postfix_rows = rows["postfix"]
        notes = ["acked/s: the loadgen's 250s per second; end-to-end/s: acked messages / "
                 "(last arrival at the sink - loadgen start); drain s: last arrival - last "
                 "ack", "p99: end of DATA to 250",
                 "limit: PERF-FACTS relay limit (1 msg/conn: new inbound STARTTLS, "
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
        need_file(SINK, "postern-sink")
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

    # -- scenario 4 -------------------------------------------------------

    def backlog(self):
        self._prereq_common()
        need_file(SINK, "postern-sink")
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

    # -- scenario 6 -------------------------------------------------------

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
                        ("kb_per_session", "KB/session"), ("of_target", "of 40 KB target"),
                        ("setup_s", "setup s"), ("holder", "client")],
            "rows": [row],
            "notes": ["RSS: VmRSS of posternd and its workers (pgrep -P), sessions idle "
                      "after STARTTLS and a second EHLO"],
        }

    # -- offered-load plot ------------------------------------------------

    # -- cross-check of the load generator ------------------------------

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

    def plot(self):
        """Open-loop steps, relay 1 KB, 50 msgs/conn: acked msgs/s and p99
        against offered msgs/s, Postern (and Postfix when installed)."""
        self._prereq_common()
        need_file(SINK, "postern-sink")
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

    # -- driver -----------------------------------------------------------

    def _progress(self, what, row):
        keep = {k: v for k, v in row.items() if not isinstance(v, dict) and k != "log_tail"}
        print(f"  [{what}] " + ", ".join(f"{k}={fmt(v)}" for k, v in keep.items()), flush=True)

    def run(self, names):
        self.selected = set(names) | set(getattr(self, "selected", ()))
        for name in names:
            load = loadavg()
            print(f"== {name} (load average {load})", flush=True)
            t0 = time.time()
            try:
                result = getattr(self, name)()
                result["status"] = "ok"
            except NotRun as e:
                result = {"title": TITLES[name], "status": f"not run: {e}", "rows": [],
                          "columns": []}
            except Interrupted:
                raise
            except Exception as e:
                result = {"title": TITLES[name], "status": f"not run: {one_line(e)}",
                          "rows": [], "columns": []}
            result.setdefault("seconds", round(time.time() - t0, 1))
            result.setdefault("load_before", load)
            self.results[name] = result
            print(render_text(result), flush=True)


@contextlib.contextmanager
def pinned(cpus):
    """Children started inside run on these CPUs (None: no change)."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def ratio(a, b):
    return a / b if a and b else None


def one_line(e):
    text = f"{type(e).__name__}: {e}" if not isinstance(e, (RuntimeError, TimeoutError)) else str(e)
    text = " ".join(text.split())
    return text[:400]


# --------------------------------------------------------------------------
# Idle TLS sessions (scenario 6)
# --------------------------------------------------------------------------


class IdleHolder:
    """N idle STARTTLS sessions held by this script's --hold-idle mode in a
    child process (postern-loadgen has no idle mode: every connection it
    opens sends mail)."""

    def __init__(self, workdir, port, n):
        self.log_path = os.path.join(workdir, f"idle-{port}.log")
        self._log = open(self.log_path, "wb")
        self.kind = "python ssl"
        self.ready_marker = "idle sessions established"
        self.n = n
        argv = [sys.executable, os.path.abspath(__file__), "--hold-idle", f"127.0.0.1:{port}",
                str(n)]
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_established(self, timeout):
        def done():
            if self.proc.poll() is not None:
                raise RuntimeError(f"idle holder exited {self.proc.returncode}: "
                                   f"{tail(self.log_path, 800)}")
            m = re.findall(rf"{self.ready_marker} (\d+) failed (\d+)", tail(self.log_path, 4000))
            if not m:
                return False
            ok, failed = map(int, m[-1])
            if ok < self.n:
                raise RuntimeError(f"only {ok} of {self.n} idle sessions ({failed} failed)")
            return True
        wait_for(done, timeout=timeout, interval=0.2, what=f"{self.n} idle sessions")

    def close(self):
        kill_group(self.proc)
        self._log.close()


def hold_idle(target, n):
    """--hold-idle HOST:PORT N: opens N sessions, each EHLO, STARTTLS, TLS
    1.3 handshake, EHLO again, then keeps them idle until killed."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 256)), hard))
    host, port = target.rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sel = selectors.DefaultSelector()
    done, failed, in_flight, started = 0, 0, 0, 0
    conns = []
    reply_end = re.compile(rb"(^|\r\n)\d{3} [^\r\n]*\r\n$")

    class Conn:
        def __init__(self):
            self.sock = socket.socket()
            self.sock.setblocking(False)
            self.sock.connect_ex((host, int(port)))
            self.state, self.buf = "greeting", b""
            sel.register(self.sock, selectors.EVENT_READ, self)

        def step(self):
            if self.state == "handshake":
                try:
                    self.sock.do_handshake()
                except ssl.SSLWantReadError:
                    return None
                except ssl.SSLWantWriteError:
                    sel.modify(self.sock, selectors.EVENT_WRITE, self)
                    return None
                sel.modify(self.sock, selectors.EVENT_READ, self)
                self.sock.send(b"EHLO idle.bench.test\r\n")
                self.state = "ehlo2"
                return None
            try:
                data = self.sock.recv(65536)
            except (ssl.SSLWantReadError, BlockingIOError):
                return None
            if not data:
                return False
            self.buf += data
            if not reply_end.search(self.buf):
                return None
            code, self.buf = self.buf[:3], b""
            if self.state == "greeting" and code == b"220":
                self.sock.send(b"EHLO idle.bench.test\r\n")
                self.state = "ehlo1"
            elif self.state == "ehlo1" and code == b"250":
                self.sock.send(b"STARTTLS\r\n")
                self.state = "starttls"
            elif self.state == "starttls" and code == b"220":
                sel.unregister(self.sock)
                self.sock = ctx.wrap_socket(self.sock, do_handshake_on_connect=False,
                                            server_hostname="mx.bench.test")
                sel.register(self.sock, selectors.EVENT_READ, self)
                self.state = "handshake"
                return self.step()
            elif self.state == "ehlo2" and code == b"250":
                self.state = "idle"
                return True
            else:
                return False
            return None

    deadline = time.monotonic() + max(60, n / 50)
    while done + failed < n and time.monotonic() < deadline:
        while started < n and in_flight < 64:
            try:
                conns.append(Conn())
                started += 1
                in_flight += 1
            except OSError:
                failed += 1
                started += 1
        for key, _ in sel.select(timeout=1.0):
            c = key.data
            try:
                r = c.step()
            except (OSError, ssl.SSLError):
                r = False
            if r is True:
                done += 1
                in_flight -= 1
                sel.unregister(c.sock)
            elif r is False:
                failed += 1
                in_flight -= 1
                sel.unregister(c.sock)
                c.sock.close()
    print(f"idle sessions established {done} failed {failed}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    return 0


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    return str(v)


def fmt_cell(key, v):
    if v is None:
        return "-"
    if key in ("of_limit", "e2e_of_limit", "of_target") and isinstance(v, (int, float)):
        return f"{100 * v:.0f} %"
    if key == "difference" and isinstance(v, (int, float)):
        return f"{100 * v:+.1f} %"
    ratios = ("ratio", "e2e_ratio", "relative", "e2e_relative", "s2_relative", "speedup")
    if key in ratios and isinstance(v, (int, float)):
        return f"{v:.2f}×"
    return fmt(v)


def table_cells(result):
    cols = result.get("columns", [])
    rows = []
    for row in result.get("rows", []):
        cells = [fmt_cell(k, row.get(k)) for k, _ in cols]
        if row.get("note"):
            cells.append(row["note"])
        rows.append(cells)
    header = [h for _, h in cols]
    if any(r.get("note") for r in result.get("rows", [])):
        header.append("note")
        rows = [r + [""] * (len(header) - len(r)) for r in rows]
    return header, rows


def duration(result):
    if result.get("seconds") is None:
        return "run alternating with scenario 2"
    return f"{result['seconds']} s"


def render_text(result):
    out = [f"{result['title']}  [{result['status']}, {duration(result)}, "
           f"load before {result.get('load_before')}]"]
    header, rows = table_cells(result)
    if rows:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w)  # noqa: E731
                                       for i, (c, w) in enumerate(zip(cells, widths)))
        out.append(line(header))
        out.append("  ".join("-" * w for w in widths))
        out += [line(r) for r in rows]
    out += [f"  {n}" for n in result.get("notes", [])]
    return "\n".join(out) + "\n"


def render_markdown(meta, results):
    m = meta["machine"]
    out = [f"## Scenarios (bench/run_scenarios.py, {meta['profile']})", "",
           f"{meta['date']}, commit `{meta['commit']}`, {m['nproc']} cores ({m['cpu']}), "
           f"Linux {m['kernel']}. Command: `{meta['command']}`. Postern workers: "
           f"{meta['settings']['workers']}, loadgen connections: "
           f"{meta['settings']['connections']}.", ""]
    for name, result in results.items():
        out.append(f"### {result['title']}")
        out.append("")
        out.append(f"Load average before: {result.get('load_before')}; {duration(result)}.")
        out.append("")
        if not result.get("rows"):
            out.append(f"{result['status']}.")
            out.append("")
            continue
        header, rows = table_cells(result)
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
        out.append("")
        out += [f"{n}  " for n in result.get("notes", [])]
        out.append("")
    return "\n".join(out)


def write_plot(outdir, rows):
    """offered_load.dat, offered_load.gp and offered_load.png in outdir."""
    dat = os.path.join(outdir, "offered_load.dat")
    gp = os.path.join(outdir, "offered_load.gp")
    png = os.path.join(outdir, "offered_load.png")
    systems = []
    with open(dat, "w") as f:
        for system in ("postern", "postfix"):
            pts = [r for r in rows if r["system"] == system and r.get("msgs_per_s") is not None]
            if not pts:
                continue
            systems.append(system)
            f.write(f"# {system}: offered acked_per_s p99_message_ms p99_data_end_to_250_ms\n")
            for r in pts:
                f.write(f"{r['offered']} {r['msgs_per_s']:.1f} {r.get('p99_msg_ms') or 0:.3f} "
                        f"{r.get('p99_ms') or 0:.3f}\n")
            f.write("\n\n")
    color = {"postern": "#1b7837", "postfix": "#d95f02"}
    plots_rate = ", ".join(f"'{dat}' index {i} using 1:2 with linespoints lw 2 "
                           f"lc rgb '{color[s]}' title '{s} acknowledged/s'"
                           for i, s in enumerate(systems))
    plots_lat = ", ".join(
        f"'{dat}' index {i} using 1:3 with linespoints lw 2 lc rgb '{color[s]}' "
        f"title '{s} p99 send time to 250', '{dat}' index {i} using 1:4 with linespoints "
        f"dashtype 2 lc rgb '{color[s]}' title '{s} p99 end of DATA to 250'"
        for i, s in enumerate(systems))
    with open(gp, "w") as f:
        f.write(f"""set terminal pngcairo size 1000,800 font ',10'
set output '{png}'
set multiplot layout 2,1 title 'Relay 1 KB, 50 msgs/conn, STARTTLS both hops, open loop ({machine_line()})'
set grid
set key left top
set xlabel 'offered msgs/s'
set ylabel 'acknowledged msgs/s'
plot x title 'offered' dashtype 3 lc rgb 'gray', {plots_rate}
set logscale y
set ylabel 'p99 latency, ms'
plot {plots_lat}
unset multiplot
""")
    files = [dat, gp]
    if systems and shutil.which("gnuplot"):
        r = subprocess.run(["gnuplot", gp], capture_output=True, text=True, timeout=60)
        if r.returncode == 0:
            files.append(png)
        else:
            files.append(f"gnuplot failed: {one_line(r.stderr)}")
    return files


def loadavg():
    """The 1-minute load average: others share this machine, and a run
    taken under load says so."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def machine_line():
    m = machine()
    return f"{m['nproc']} cores, {m['cpu']}, Linux {m['kernel']}, {git_commit()}"


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release()}


def git_commit():
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


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

    signal.signal(signal.SIGTERM, _on_sigterm)
    names = args.only or SCENARIOS
    names = [n for n in SCENARIOS if n in names]  # dependency order: relay before postfix
    meta = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "commit": git_commit(), "machine": machine(), "profile": args.profile,
        "command": "python3 bench/run_scenarios.py " + " ".join(argv or sys.argv[1:]),
        "settings": {"connections": args.connections, "workers": args.workers,
                     "bounds": PROFILES[args.profile]},
        "limits_source": "../shared/PERF-FACTS.md (2-vCPU VM)",
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
