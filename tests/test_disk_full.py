"""A full disk, for real: the node's data dir is a small tmpfs this test
mounts. Messages are accepted until the spool cannot write; then the client
gets 452 4.3.1, nothing half-written stays in the spool, the worker keeps
serving, and once space returns the next message is accepted again."""
import os
import smtplib
import subprocess
import tempfile
import time
import unittest

from node import Node

BODY = b"Subject: fill\r\n\r\n" + (b"x" * 998 + b"\r\n") * 200  # ~200 KB


def send(port):
    """The server's reply to the end of DATA (code, text)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        s.ehlo("client.test")
        s.mail("a@client.test")
        s.rcpt("b@example.com")
        return s.data(BODY)


class DiskFullTest(unittest.TestCase):
    def setUp(self):
        self.mnt = tempfile.mkdtemp(prefix="postern-diskfull-")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", self.mnt],
                           capture_output=True, text=True)
        if r.returncode != 0:
            self.fail(f"cannot mount a tmpfs (the test needs root): {r.stderr}")
        self.addCleanup(os.rmdir, self.mnt)
        self.addCleanup(subprocess.run, ["umount", "-l", self.mnt], check=False)

    def test_full_disk_answers_452_keeps_nothing_partial_and_recovers(self):
        node = Node(extra_yaml="delivery: { hold: true }\n")
        node.data_dir = os.path.join(self.mnt, "data")
        with open(node.config_path) as f:
            config = f.read()
        with open(node.config_path, "w") as f:
            f.write(config.replace(os.path.join(node.dir, "data"), node.data_dir))
        self.addCleanup(node.close)
        node.start()
        # Leave a few MB for the spool, then fill with ~200 KB messages.
        filler = os.path.join(self.mnt, "filler")
        stat = os.statvfs(self.mnt)
        free = stat.f_bavail * stat.f_frsize
        with open(filler, "wb") as f:
            f.write(b"\0" * max(0, free - 4 * 1024 * 1024))
        accepted = 0
        refused = None
        for _ in range(100):
            try:
                code, text = send(node.smtp_port)
            except smtplib.SMTPServerDisconnected:
                self.fail(f"connection dropped; node log:\n{node.logs()[-6000:]}")
            if code == 250:
                accepted += 1
                continue
            refused = (code, text.decode())
            break
        self.assertIsNotNone(refused, "the disk never filled")
        self.assertEqual(refused[0], 452, refused)
        self.assertIn("4.3.1", refused[1])
        self.assertGreater(accepted, 0)

        # The worker keeps serving: it answers, and refuses while full.
        with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=20) as s:
            self.assertEqual(s.ehlo("client.test")[0], 250)

        # Space returns: accepted again (after the store reopens).
        os.unlink(filler)
        deadline = time.monotonic() + 20
        while True:
            code, text = send(node.smtp_port)
            if code == 250:
                break
            self.assertLess(time.monotonic(), deadline, f"still refused: {code} {text}")
            time.sleep(0.5)
        self.assertEqual(node.stop(), 0)
        # Exactly the acknowledged messages are in the spool: nothing partial.
        self.assertEqual(int(node.spool("count")), accepted + 1)


if __name__ == "__main__":
    unittest.main()
