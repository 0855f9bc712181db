"""A postern-sink process for integration tests: the receiving peer of
delivery tests and benchmarks (bench/postern_sink_main.cc)."""
import hashlib
import json
import os
import select
import signal
import subprocess
import tempfile
import time

from node import BIN, free_port, wait_for
from tls_helpers import make_client_cert

SINK = os.path.join(BIN, "bench/postern-sink")


class Sink:
    """One postern-sink process on a free loopback port with its own temp
    dir (and a self-signed ECDSA certificate there for --tls)."""

    def __init__(self, *args, tls=None, cert=None, ip="127.0.0.1", port=None):
        """tls: none|offer|implicit; cert: (cert_file, key_file) to present
        instead of a fresh self-signed one; ip/port: where to listen."""
        self.tmp = tempfile.TemporaryDirectory(prefix="postern-sink-test-")
        self.dir = self.tmp.name
        self.ip = ip
        self.port = port or free_port()
        self.jsonl = os.path.join(self.dir, "messages.jsonl")
        self.stats_path = os.path.join(self.dir, "stats.json")
        argv = [SINK, "--listen", f"{ip}:{self.port}", "--jsonl", self.jsonl,
                "--stats", self.stats_path, "--duration", "60", *args]
        if tls:
            cert_file, key_file = cert or make_client_cert(self.dir, "sink")[:2]
            argv += ["--tls", tls, "--cert", cert_file, "--key", key_file]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self._wait_ready()

    def _wait_ready(self, timeout=10):
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise TimeoutError("postern-sink did not report listening")
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"postern-sink exited: {self.proc.wait()} "
                                   f"{self.proc.stderr.read().decode(errors='replace')}")
            line += chunk
        assert line.startswith(f"postern-sink listening on {self.ip}:".encode()), line

    def records(self):
        """Complete lines only: the sink flushes its buffer once a second,
        which can end in the middle of a line."""
        try:
            with open(self.jsonl) as f:
                text = f.read()
        except FileNotFoundError:
            return []
        return [json.loads(l) for l in text.split("\n")[:-1] if l.strip()]

    def wait_records(self, n):
        """The JSON lines are written about once a second."""
        return wait_for(lambda: len(self.records()) >= n and self.records(), timeout=5,
                        what=f"{n} jsonl records")

    def stats(self):
        try:
            with open(self.stats_path) as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def wait_stats(self, **expected):
        return wait_for(lambda: all(self.stats().get(k) == v for k, v in expected.items())
                        and self.stats(), timeout=5, what=f"stats {expected}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        finally:
            self.close()

    def close(self):
        if self.proc.stderr.closed:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        errors = self.proc.stderr.read().decode(errors="replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        self.tmp.cleanup()
        # Under the asan build (POSTERN_BIN) a sanitizer report fails the test.
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if marker in errors:
                raise AssertionError(f"sanitizer report from postern-sink:\n{errors[-4000:]}")


def message(subject, extra_lines=()):
    """A CRLF message ending in CRLF: exactly what the sink hashes after
    smtplib dot-stuffs it and the sink removes the stuffing."""
    lines = ["From: a@sender.test", "To: b@rcpt.test", f"Subject: {subject}", "",
             "hello", ".a line that starts with a dot", ".", *extra_lines]
    return ("\r\n".join(lines) + "\r\n").encode()


def sha256(data):
    return hashlib.sha256(data).hexdigest()
