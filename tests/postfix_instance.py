"""A private Postfix instance for interop tests and benchmarks.

PostfixInstance(relay_to_port) writes its own main.cf/master.cf into a fresh
temporary directory (config, queue and data directories all live there),
listens only on 127.0.0.1:<free port> and relays every message to
[127.0.0.1]:relay_to_port. It never touches /etc/postfix or the system queue,
so several instances can run side by side and next to a system Postfix.

    with PostfixInstance(node.ports["mx"], tls_level="encrypt") as pf:
        pf.send("a@example.com", "b@example.org", b"Subject: hi\\r\\n\\r\\nhi\\r\\n")
        pf.wait_delivered(1, timeout=20)

Needs the Debian "postfix" package (tools/setup.sh) and root: master runs as
root and its daemons as mail_owner "postfix".

Pitfalls handled here:
- Postfix daemons chdir into queue_directory as user "postfix", so every
  directory on the way must be traversable (tempfile makes 0700 dirs; we
  chmod the instance root 0755).
- maillog_file is only honoured under maillog_file_prefixes (default /var,
  /dev/stdout), so the prefix is set to the instance directory, and the
  "postlog" unix-dgram service (postlogd) must be in master.cf.
- No service is chrooted (no /etc files to copy into a jail).
- The smtp client's loop detection compares the peer's EHLO name with
  myhostname; each instance gets a unique myhostname.
- "postfix start" runs post-install create-missing, which creates the queue
  subdirectories with the right owners; "postfix stop" waits up to 5 s and
  then kills the master's process group; close() adds a SIGKILL fallback.
"""
import json
import os
import re
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time

from node import free_port, wait_for

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTQUEUE = shutil.which("postqueue") or "/usr/sbin/postqueue"

TLS_LEVELS = ("none", "may", "encrypt")

# type private unpriv chroot wakeup maxproc command
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixError(RuntimeError):
    pass


class PostfixInstance:
    def __init__(self, relay_to_port, tls_level="none", smtp_port=None, extra_main_cf=None,
                 start=True):
        """relay_to_port: the port on 127.0.0.1 every message is relayed to.
        tls_level: smtp_tls_security_level of the sending client.
        extra_main_cf: {parameter: value} appended to main.cf (benchmarks:
        e.g. default_destination_concurrency_limit)."""
        if tls_level not in TLS_LEVELS:
            raise ValueError(f"tls_level must be one of {TLS_LEVELS}, not {tls_level!r}")
        self.relay_to_port = relay_to_port
        self.tls_level = tls_level
        self.port = smtp_port or free_port()
        self.tmp = tempfile.TemporaryDirectory(prefix=f"postfix-test-{self.port}-")
        self.dir = self.tmp.name
        os.chmod(self.dir, 0o755)  # daemons running as "postfix" must reach the queue
        self.config_dir = os.path.join(self.dir, "etc")
        self.queue_dir = os.path.join(self.dir, "queue")
        self.data_dir = os.path.join(self.dir, "data")
        self.maillog = os.path.join(self.dir, "maillog")
        self.syslog_name = f"postfix-test-{self.port}"
        self.myhostname = f"postfix-test-{self.port}.localdomain"
        os.makedirs(self.config_dir)
        os.makedirs(self.queue_dir)
        self._write_config(extra_main_cf or {})
        self.running = False
        if start:
            try:
                self.start()
            except BaseException:
                self.close()
                raise

    # -- configuration -----------------------------------------------------

    def _write_config(self, extra):
        params = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "mail_owner": "postfix",
            "syslog_name": self.syslog_name,
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.dir,
            "myhostname": self.myhostname,
            "mydomain": "localdomain",
            "myorigin": "$myhostname",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mydestination": "",
            "local_recipient_maps": "",
            "local_transport": "error:local delivery is disabled",
            "alias_maps": "",
            "alias_database": "",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_recipient_restrictions": "permit_mynetworks, reject",
            "relayhost": f"[127.0.0.1]:{self.relay_to_port}",
            "smtp_dns_support_level": "disabled",
            "smtpd_peername_lookup": "no",
            "smtp_tls_security_level": self.tls_level,
            "smtp_tls_loglevel": "1",
            "smtpd_tls_security_level": "none",
            # Tests want fast, bounded retries and no 4h backoff.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "5s",
            "smtp_connect_timeout": "5s",
            "biff": "no",
            "append_dot_mydomain": "no",
            "readme_directory": "no",
            "message_size_limit": "52428800",
        }
        params.update(extra)
        with open(os.path.join(self.config_dir, "main.cf"), "w") as f:
            for key, value in params.items():
                f.write(f"{key} = {value}\n")
        with open(os.path.join(self.config_dir, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port))

    def _env(self):
        env = dict(os.environ)
        env["MAIL_CONFIG"] = self.config_dir
        return env

    def _postfix(self, *args, timeout=30, check=True):
        r = subprocess.run([POSTFIX, "-c", self.config_dir, *args], capture_output=True,
                           text=True, timeout=timeout, env=self._env())
        if check and r.returncode != 0:
            raise PostfixError(f"postfix {' '.join(args)} failed ({r.returncode}):\n"
                               f"{r.stdout}{r.stderr}\n--- maillog:\n{self.log()}")
        return r

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout=30):
        self.running = True  # even a failed start may leave a master behind
        self._postfix("start", timeout=timeout)
        wait_for(self._listening, timeout=timeout, what=f"postfix smtpd on port {self.port}")
        return self

    def _listening(self):
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as s:
                return s.noop()[0] == 250
        except (OSError, smtplib.SMTPException):
            return False

    def master_pid(self):
        try:
            with open(os.path.join(self.queue_dir, "pid", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    @staticmethod
    def _alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # A zombie still answers kill(0); look at its state.
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    def stop(self, timeout=15):
        """Stops master and every daemon; always leaves no process behind."""
        if not self.running:
            return
        pid = self.master_pid()
        try:
            self._postfix("stop", timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            pass
        if pid is not None:
            deadline = time.monotonic() + 5
            while self._alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            # master runs in its own session; its daemons share its group.
            for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
                try:
                    target()
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.monotonic() + 5
            while self._alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        self.running = False

    def close(self):
        try:
            self.stop()
        finally:
            self.tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- mail --------------------------------------------------------------

    def send(self, sender, recipients, body, timeout=30):
        """Submits one message through this instance's smtpd; returns the
        Postfix queue id from the 250 reply."""
        if isinstance(recipients, str):
            recipients = [recipients]
        if isinstance(body, str):
            body = body.encode()
        with smtplib.SMTP("127.0.0.1", self.port, timeout=timeout) as s:
            s.ehlo("client.test")
            s.mail(sender)
            for rcpt in recipients:
                code, msg = s.rcpt(rcpt)
                if code != 250:
                    raise PostfixError(f"RCPT {rcpt} refused: {code} {msg!r}")
            code, msg = s.data(body)
            if code != 250:
                raise PostfixError(f"DATA refused: {code} {msg!r}")
        m = re.search(rb"queued as ([0-9A-Za-z]+)", msg)
        return m.group(1).decode() if m else None

    def log(self):
        try:
            with open(self.maillog, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_lines(self, pattern):
        rx = re.compile(pattern)
        return [line for line in self.log().splitlines() if rx.search(line)]

    def sent_lines(self):
        return self.log_lines(r"/(smtp|relay)\[\d+\]: .* status=sent ")

    def wait_delivered(self, n=1, timeout=30):
        """Waits until at least n status=sent lines are in the maillog;
        returns them."""
        try:
            return wait_for(lambda: (lambda lines: lines if len(lines) >= n else None)(self.sent_lines()),
                            timeout=timeout, interval=0.1, what=f"{n} status=sent")
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n--- queue:\n{self.queue()}\n--- maillog:\n{self.log()}") from None

    def wait_log(self, pattern, timeout=30):
        try:
            return wait_for(lambda: self.log_lines(pattern), timeout=timeout, interval=0.1,
                            what=f"maillog line matching {pattern!r}")
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n--- maillog:\n{self.log()}") from None

    def queue(self):
        """postqueue -p output ("Mail queue is empty" when nothing is queued)."""
        r = subprocess.run([POSTQUEUE, "-c", self.config_dir, "-p"], capture_output=True,
                           text=True, timeout=30, env=self._env())
        return r.stdout + r.stderr

    def queue_json(self):
        """postqueue -j: one dict per queued message."""
        r = subprocess.run([POSTQUEUE, "-c", self.config_dir, "-j"], capture_output=True,
                           text=True, timeout=30, env=self._env())
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]

    def wait_queue_empty(self, timeout=30):
        return wait_for(lambda: "Mail queue is empty" in self.queue(), timeout=timeout,
                        interval=0.2, what="postfix queue empty")
