"""Startup an operator can trust: one posternd per data dir, and what cannot
work (an address in use, no listeners) stops posternd at once, with the
reason, instead of workers restarting with backoff. Real processes on
loopback; every process started here is killed in cleanup."""
import fcntl
import os
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from node import Node, binary, free_port, wait_for

# A posternd that must refuse to start answers well within this; one that
# does not is killed at it (with its process group) and the test fails.
REFUSE_TIMEOUT = 15


def run_posternd(*args, cwd=None):
    """Runs posternd in its own process group until it exits or
    REFUSE_TIMEOUT passes; returns (returncode or None, stderr, seconds).
    Whatever is left of the group (workers of a posternd that did start) is
    killed either way."""
    started = time.monotonic()
    proc = subprocess.Popen([binary("posternd"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, cwd=cwd)
    try:
        _, err = proc.communicate(timeout=REFUSE_TIMEOUT)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        rc = None
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return rc, err.decode(errors="replace"), time.monotonic() - started


def listening_socket(port, reuseport=False):
    s = socket.socket()
    if reuseport:
        # How the workers (and cpp-httplib by default) listen: a second
        # SO_REUSEPORT socket of the same user could bind beside it.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.listen(8)
    return s


def posternctl_status(socket_path):
    return subprocess.run([binary("posternctl"), "--server", socket_path, "status"],
                          capture_output=True, timeout=30)


class SecondNodeTest(unittest.TestCase):
    def setUp(self):
        self.node = Node(workers=1, hold_delivery=True).start()
        self.addCleanup(self.node.close)
        self.admin_socket = os.path.join(self.node.data_dir, "admin.sock")

    def test_second_posternd_on_the_data_dir_exits_and_leaves_the_first_alone(self):
        inode = os.stat(self.admin_socket).st_ino
        workers = self.node.worker_pids()
        rc, err, seconds = run_posternd("--config", self.node.config_path)
        self.assertIsNotNone(rc, "the second posternd kept running:\n" + err)
        self.assertEqual(rc, 1, err)
        self.assertLess(seconds, 5, err)
        self.assertIn(f"data dir {self.node.data_dir} is in use by posternd pid "
                      f"{self.node.proc.pid}", err)
        # The lock comes first: nothing was probed, generated or started.
        self.assertNotIn("cannot listen", err)
        self.assertNotIn("event=starting", err)

        # The running node is untouched and can still be managed.
        self.assertEqual(os.stat(self.admin_socket).st_ino, inode)
        r = posternctl_status(self.admin_socket)
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())
        self.assertIn(b"ready", r.stdout)
        self.assertEqual(self.node.http("/readyz")[0], 200)
        self.assertEqual(self.node.worker_pids(), workers)
        self.assertNotIn("worker_died", self.node.logs())
        with open(os.path.join(self.node.data_dir, "posternd.pid")) as f:
            self.assertEqual(f.read(), f"{self.node.proc.pid}\n")

    def test_another_node_cannot_take_a_shared_admin_socket(self):
        # control.admin_socket outside the data dir is not covered by the
        # lock; a live socket is still not unlinked from under its node.
        shared = os.path.join(self.node.dir, "shared-admin.sock")
        self.node.stop()
        text = open(self.node.config_path).read().replace(
            "control:\n", f'control:\n  admin_socket: "{shared}"\n')
        open(self.node.config_path, "w").write(text)
        self.node.start()
        other = Node(workers=1, hold_delivery=True)
        self.addCleanup(other.close)
        text = open(other.config_path).read().replace(
            "control:\n", f'control:\n  admin_socket: "{shared}"\n')
        open(other.config_path, "w").write(text)
        rc, err, _ = run_posternd("--config", other.config_path)
        self.assertEqual(rc, 1, err)
        self.assertIn(f"admin socket {shared} is in use by another process", err)
        self.assertEqual(posternctl_status(shared).returncode, 0)


class RestartAfterCrashTest(unittest.TestCase):
    def test_kill9_releases_the_lock(self):
        node = Node(workers=1, hold_delivery=True).start()
        self.addCleanup(node.close)
        first = node.proc.pid
        node.kill()  # SIGKILL to posternd and its workers
        node.start()  # waits for /readyz
        self.assertNotEqual(node.proc.pid, first)
        with open(os.path.join(node.data_dir, "posternd.pid")) as f:
            self.assertEqual(f.read(), f"{node.proc.pid}\n")
        r = posternctl_status(os.path.join(node.data_dir, "admin.sock"))
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())


class AddressInUseTest(unittest.TestCase):
    def setUp(self):
        self.node = Node(workers=2, hold_delivery=True)
        self.addCleanup(self.node.close)

    def refused(self, port, name):
        rc, err, seconds = run_posternd("--config", self.node.config_path)
        self.assertIsNotNone(rc, "posternd kept running:\n" + err)
        self.assertEqual(rc, 1, err)
        self.assertLess(seconds, 5, err)
        self.assertIn(f"posternd: {name}: cannot listen on 127.0.0.1:{port}: "
                      "Address already in use", err)
        # Refused before any worker: no crash loop.
        self.assertNotIn("worker_started", err)
        self.assertNotIn("worker_died", err)
        # The data dir lock went with the process.
        with open(os.path.join(self.node.data_dir, "posternd.pid")) as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def test_smtp_listener_address_in_use(self):
        port = self.node.ports["mx"]
        with listening_socket(port):
            self.refused(port, "listener mx")

    def test_smtp_listener_address_held_with_reuseport(self):
        port = self.node.ports["mx"]
        with listening_socket(port, reuseport=True):
            self.refused(port, "listener mx")

    def test_metrics_address_in_use(self):
        with listening_socket(self.node.metrics_port):
            self.refused(self.node.metrics_port, "control.metrics_listen")

    def test_metrics_address_held_with_reuseport(self):
        # cpp-httplib sets SO_REUSEPORT unless told otherwise: a node used to
        # bind beside this socket without a word.
        with listening_socket(self.node.metrics_port, reuseport=True):
            self.refused(self.node.metrics_port, "control.metrics_listen")

    def test_node_starts_once_the_address_is_free(self):
        with listening_socket(self.node.ports["mx"]):
            rc, _, _ = run_posternd("--config", self.node.config_path)
            self.assertEqual(rc, 1)
        self.node.start()
        self.assertEqual(self.node.http("/readyz")[0], 200)


class NoListenersTest(unittest.TestCase):
    MESSAGE = "listeners: none configured; a node needs at least one SMTP listener"

    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix="postern-test-")
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name
        self.data_dir = os.path.join(self.dir, "data")

    def test_config_without_listeners_is_refused(self):
        path = os.path.join(self.dir, "postern.yaml")
        with open(path, "w") as f:
            f.write(f'node: {{ data_dir: "{self.data_dir}", workers: 1 }}\n'
                    f'control: {{ metrics_listen: "127.0.0.1:{free_port()}" }}\n')
        for args in (["--config", path], ["--config", path, "--check-config"]):
            rc, err, _ = run_posternd(*args)
            self.assertEqual(rc, 2, err)
            self.assertIn(f"posternd: configuration error: {path}: {self.MESSAGE}", err)
        self.assertFalse(os.path.exists(self.data_dir))

    def test_dev_null_is_refused(self):
        # An empty file is all defaults, and so no listeners. Run in a
        # scratch directory: the default data dir is ./var/postern.
        rc, err, _ = run_posternd("--config", "/dev/null", cwd=self.dir)
        self.assertEqual(rc, 2, err)
        self.assertIn(f"posternd: configuration error: /dev/null: {self.MESSAGE}", err)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "var")))

    def test_embedded_defaults_have_listeners(self):
        proc = subprocess.run([binary("posternd"), "--check-config"], capture_output=True,
                              timeout=30, cwd=self.dir)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode())
        self.assertEqual(proc.stdout, b"configuration ok\n")

    def test_empty_listener_list_is_refused(self):
        path = os.path.join(self.dir, "postern.yaml")
        with open(path, "w") as f:
            f.write(f'node: {{ data_dir: "{self.data_dir}" }}\nlisteners: []\n'
                    f'control: {{ metrics_listen: "127.0.0.1:{free_port()}" }}\n')
        rc, err, _ = run_posternd("--config", path)
        self.assertEqual(rc, 2, err)
        self.assertIn(self.MESSAGE, err)


if __name__ == "__main__":
    unittest.main()
