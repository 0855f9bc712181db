"""Idle TLS sessions (scenario 6): the holder in a child process and the
--hold-idle mode of bench/run_scenarios.py that it runs."""
import os
import re
import selectors
import socket
import ssl
import subprocess
import sys
import time

from node import wait_for  # noqa: E402

from . import ENTRY_POINT
from .harness import kill_group, tail


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
        argv = [sys.executable, ENTRY_POINT, "--hold-idle", f"127.0.0.1:{port}",
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
