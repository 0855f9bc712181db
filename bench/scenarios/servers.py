"""The processes the load goes through: postern-sink, a Postern node and a
private Postfix."""
import json
import os
import shutil
import subprocess
import threading
import time

from node import Node, free_port, wait_for  # noqa: E402

from . import harness
from .harness import kill_group, rss_kb, tail
from .settings import RCPT_DOMAIN


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
        argv = [harness.SINK, "--listen", f"127.0.0.1:{self.port}",
                "--stats", self.stats_path,
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
