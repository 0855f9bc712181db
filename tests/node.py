"""Starts and stops a real Postern node for integration tests.

Every node gets free loopback ports and its own temporary data dir; stop()
sends SIGTERM and waits, and kill() is the fallback, so no test leaves
processes behind.
"""
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

BIN = os.environ.get("POSTERN_BIN") or os.path.join(os.path.dirname(__file__), "..", "bazel-bin")


def binary(name: str) -> str:
    paths = {
        "posternd": "cmd/posternd/posternd",
        "postern-worker": "cmd/postern-worker/postern-worker",
        "postern-spool": "cmd/postern-spool/postern-spool",
        "postern-passwd": "cmd/postern-passwd/postern-passwd",
        "posternctl": "cmd/posternctl/posternctl",
        "postern-sink": "bench/postern-sink",
    }
    return os.path.join(BIN, paths[name])


def read_reply(sock, timeout=20):
    """Reads until a complete (possibly multi-line) SMTP reply has arrived."""
    sock.settimeout(timeout)
    data = b""
    while not re.search(rb"(^|\r\n)\d{3} [^\r\n]*\r\n$", data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


_handed_out = set()


def _ports_outside_ephemeral_range():
    """(first, last) of a port range the kernel never picks source ports from."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    if low > 11000:
        return 10000, low - 1
    if high < 64535:
        return high + 1, 65535
    return 1024, 65535  # no room outside it: at least the bind check holds


def free_port() -> int:
    """A loopback port nobody listens on, chosen outside the kernel's
    ephemeral range. A port from that range (what binding port 0 gives) can
    be picked by the kernel as the source port of a client connecting to it
    before the server has bound it: the client then connects to itself and
    reads its own request back (seen in CI as a garbled /readyz reply)."""
    first, last = _ports_outside_ephemeral_range()
    for _ in range(1000):
        port = random.randint(first, last)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port")


def wait_for(predicate, timeout=20.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


class Node:
    def __init__(self, workers=1, extra_yaml="", drain_timeout="5s", listeners=None,
                 relay_yaml=None, hold_delivery=False):
        """listeners: {name: "tls: offer, auth: after_tls"} (attributes
        besides name and address); default one plaintext listener "mx".
        relay_yaml: the relay section's body.
        hold_delivery: for tests that look at what was spooled. Otherwise the
        node starts delivering at once: mail to the test domains fails
        (NXDOMAIN here) and leaves the spool, racing the test's look."""
        if hold_delivery:
            extra_yaml = "delivery: { hold: true }\n" + extra_yaml
        self.tmp = tempfile.TemporaryDirectory(prefix="postern-test-")
        self.dir = self.tmp.name
        self.data_dir = os.path.join(self.dir, "data")
        listeners = listeners or {"mx": "tls: none, auth: none"}
        self.ports = {name: free_port() for name in listeners}
        self.smtp_port = next(iter(self.ports.values()))
        self.metrics_port = free_port()
        listener_yaml = "".join(
            f'  - {{ name: {name}, address: "127.0.0.1:{self.ports[name]}", {attrs} }}\n'
            for name, attrs in listeners.items())
        relay_yaml = relay_yaml or "  accepted_domains: [example.com]\n  trusted_networks: [127.0.0.0/8]\n"
        self.workers = workers
        self.config_path = os.path.join(self.dir, "postern.yaml")
        self.log_path = os.path.join(self.dir, "posternd.log")
        with open(self.config_path, "w") as f:
            f.write(
                f"""node: {{ name: test-node, data_dir: "{self.data_dir}", workers: {workers}, drain_timeout: {drain_timeout} }}
listeners:
{listener_yaml}relay:
{relay_yaml}control:
  metrics_listen: "127.0.0.1:{self.metrics_port}"
{extra_yaml}"""
            )
        self.proc = None
        self.log = None

    def start(self, wait_ready=True):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [binary("posternd"), "--config", self.config_path],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait_ready:
            try:
                wait_for(self.ready, what="node ready")
            except TimeoutError as e:
                tail = "\n".join(self.logs().splitlines()[-60:])
                raise TimeoutError(f"{e}; /readyz {self.http('/readyz')}; log tail:\n{tail}") from None
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.metrics_port}{path}"

    def http(self, path: str):
        try:
            with urllib.request.urlopen(self.url(path), timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except (OSError, http.client.HTTPException):
            return None, ""

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"posternd exited with {self.proc.returncode}:\n{self.logs()}")
        return self.http("/readyz")[0] == 200

    def metrics(self) -> str:
        status, body = self.http("/metrics")
        assert status == 200, status
        return body

    def metric(self, name: str, labels: str = "") -> float:
        """Sum of the samples of `name` whose label set contains `labels`."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            metric_name = series.split("{", 1)[0]
            if metric_name == name and labels in series:
                total += float(value)
        return total

    def logs(self) -> str:
        try:
            return open(self.log_path, errors="replace").read()
        except OSError:
            return ""

    def worker_pids(self):
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
        ).stdout.split()
        return [int(p) for p in out]

    def spool_dir(self, shard=0) -> str:
        return os.path.join(self.data_dir, "spool", str(shard))

    def spool(self, *args, shard=0) -> str:
        return subprocess.run(
            [binary("postern-spool"), "--dir", self.spool_dir(shard), *args],
            check=True,
            capture_output=True,
        ).stdout

    def stop(self, timeout=20.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.kill()

    def kill(self):
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def close(self):
        self.kill()
        if self.log is not None:
            self.log.close()
        logs = self.logs()
        self.tmp.cleanup()
        # Under the asan build a sanitizer report fails the test that
        # provoked it, even if the crashed worker was restarted.
        for marker in ("ERROR: AddressSanitizer", "runtime error:"):
            if marker in logs:
                raise AssertionError(f"sanitizer report in node logs:\n{logs[-4000:]}")


class CtlMixin:
    """posternctl against self.socket ("unix:PATH") for a TestCase: ctl()
    asserts the exit status and returns (stdout, stderr); ctl_json() parses
    --json output."""

    def ctl(self, *args, expect_rc=0):
        r = subprocess.run([binary("posternctl"), "--server", self.socket, *args],
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, expect_rc,
                         f"posternctl {' '.join(args)}: {r.stdout.decode()}{r.stderr.decode()}")
        return r.stdout.decode(), r.stderr.decode()

    def ctl_json(self, *args, expect_rc=0):
        out, _ = self.ctl(*args, "--json", expect_rc=expect_rc)
        return json.loads(out)
