"""The foundation: a node starts, accepts mail durably, counts it, survives a
worker crash, reloads, and drains. Real peers: swaks, smtplib, promtool."""
import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import time
import unittest

from node import Node, binary, wait_for

QUEUED = re.compile(rb"250 2\.0\.0 Ok: queued as ([0-9A-F]+)")


def swaks(node, *args):
    return subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{node.smtp_port}", "--timeout", "20", *args],
        capture_output=True,
        timeout=60,
    )


def spooled_ids(node):
    lines = node.spool("list", "--json").decode().splitlines()
    return {json.loads(l)["queue_id"]: json.loads(l) for l in lines if l.strip()}


class NodeTestCase(unittest.TestCase):
    workers = 1
    extra_yaml = ""

    def setUp(self):
        self.node = Node(workers=self.workers, extra_yaml=self.extra_yaml,
                         hold_delivery=True).start()
        self.addCleanup(self.node.close)


class AcceptanceTest(NodeTestCase):
    def test_swaks_gets_250_and_body_is_spooled_byte_for_byte(self):
        body = "Subject: hello\r\n\r\nfirst line\r\n.leading dot\r\nlast line"
        r = swaks(self.node, "--to", "someone@example.org", "--from", "sender@example.com",
                  "--data", body)
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())
        m = QUEUED.search(r.stdout)
        self.assertIsNotNone(m, r.stdout.decode())
        queue_id = m.group(1).decode()
        entries = spooled_ids(self.node)
        self.assertIn(queue_id, entries)
        self.assertEqual(entries[queue_id]["sender"], "sender@example.com")
        self.assertEqual(entries[queue_id]["recipients"], ["someone@example.org"])
        stored = self.node.spool("body", queue_id)
        # The node prepends its Received header; the rest is what swaks sent,
        # dot-unstuffed, with CRLF line ends.
        self.assertTrue(stored.startswith(b"Received: from "), stored[:200])
        self.assertIn(f"id {queue_id}".encode(), stored.split(b"\r\n\r\n", 1)[0])
        self.assertTrue(stored.endswith(body.encode() + b"\r\n"), stored[-200:])

    def test_smtplib_message_with_binary_safe_lines(self):
        payload = (b"From: a@example.com\r\nTo: b@example.org\r\nSubject: t\r\n\r\n"
                   b".starts with a dot\r\n..two dots\r\n" + b"x" * 998 + b"\r\n\xc3\xa9t\xc3\xa9\r\n")
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=20) as s:
            code, _ = s.ehlo("client.test")
            self.assertEqual(code, 250)
            self.assertTrue(s.has_extn("pipelining"))
            self.assertTrue(s.has_extn("8bitmime"))
            s.mail("a@example.com", ["BODY=8BITMIME"])
            s.rcpt("b@example.org")
            code, resp = s.data(payload)
            self.assertEqual(code, 250, resp)
            m = re.search(rb"queued as ([0-9A-F]+)", resp)
            self.assertIsNotNone(m)
        stored = self.node.spool("body", m.group(1).decode())
        self.assertTrue(stored.endswith(payload), stored[-300:])

    def test_twenty_messages_on_one_session_are_spooled_and_counted(self):
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=20) as s:
            for i in range(20):
                refused = s.sendmail("a@example.com", ["b@example.org"], f"Subject: {i}\r\n\r\n{i}\r\n")
                self.assertEqual(refused, {})
        entries = spooled_ids(self.node)
        self.assertEqual(len(entries), 20)
        wait_for(lambda: self.node.metric("postern_messages_accepted_total", 'listener="mx"') == 20,
                 what="accepted counter at 20")
        self.assertEqual(self.node.metric("postern_spool_batch_messages_sum"), 20)
        self.assertGreaterEqual(self.node.metric("postern_connections_accepted_total"), 1)
        self.assertEqual(self.node.metric("postern_spool_messages", 'shard="0"'), 20)

    def test_prometheus_accepts_the_exposition(self):
        swaks(self.node, "--to", "someone@example.org")
        text = self.node.metrics()
        self.assertIn("postern_spool_write_seconds_bucket", text)
        r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())

    def test_health_endpoints(self):
        self.assertEqual(self.node.http("/healthz")[0], 200)
        self.assertEqual(self.node.http("/readyz")[0], 200)


class CrashTest(NodeTestCase):
    def test_kill9_worker_is_restarted_and_spool_survives(self):
        r = swaks(self.node, "--to", "someone@example.org", "--data", "Subject: before\r\n\r\nbefore crash")
        queue_id = QUEUED.search(r.stdout).group(1).decode()
        (pid,) = self.node.worker_pids()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: self.node.worker_pids() not in ([], [pid]), what="a new worker")
        wait_for(self.node.ready, what="ready after restart")
        self.assertEqual(self.node.metric("postern_worker_restarts_total"), 1)
        self.assertIn(queue_id, spooled_ids(self.node))
        self.assertTrue(self.node.spool("body", queue_id).endswith(b"before crash\r\n"))
        r = swaks(self.node, "--to", "someone@example.org")
        self.assertIsNotNone(QUEUED.search(r.stdout), r.stdout.decode())
        self.assertIn("worker_died", self.node.logs())


class DrainTest(NodeTestCase):
    def test_sigterm_stops_cleanly_and_closes_idle_sessions(self):
        sock = socket.create_connection(("127.0.0.1", self.node.smtp_port), timeout=20)
        self.assertTrue(sock.recv(1024).startswith(b"220 "))
        sock.sendall(b"EHLO idle.test\r\n")
        time.sleep(0.2)
        sock.recv(4096)
        started = time.monotonic()
        rc = self.node.stop(timeout=20)
        elapsed = time.monotonic() - started
        self.assertEqual(rc, 0, self.node.logs())
        # drain_timeout is 5s in tests/node.py; the idle session is cut at it.
        self.assertLess(elapsed, 5 + 5)
        rest = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            rest += chunk
        self.assertTrue(rest.startswith(b"421 4.3.2"), rest)
        sock.close()
        self.assertIn("event=stopped", self.node.logs())


class ReloadTest(NodeTestCase):
    extra_yaml = ""

    def setUp(self):
        self.node = Node(workers=1, hold_delivery=True)
        self.addCleanup(self.node.close)
        # Loopback is not trusted here, so relay depends on accepted_domains.
        text = open(self.node.config_path).read().replace("[127.0.0.0/8]", "[10.0.0.0/8]")
        open(self.node.config_path, "w").write(text)
        self.node.start()

    def test_sighup_applies_new_accepted_domains(self):
        r = swaks(self.node, "--to", "x@example.org", "--quit-after", "RCPT")
        self.assertIn(b"554 5.7.1", r.stdout)
        text = open(self.node.config_path).read().replace(
            "accepted_domains: [example.com]", "accepted_domains: [example.com, example.org]")
        open(self.node.config_path, "w").write(text)
        self.node.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config_acked" in self.node.logs(), what="worker ack")
        r = swaks(self.node, "--to", "x@example.org")
        self.assertIsNotNone(QUEUED.search(r.stdout), r.stdout.decode())

    def test_sighup_with_broken_config_keeps_running(self):
        with open(self.node.config_path, "a") as f:
            f.write("bogus_key: 1\n")
        self.node.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload_refused" in self.node.logs(), what="reload refused")
        self.assertIn("bogus_key", self.node.logs())
        r = swaks(self.node, "--to", "x@example.com")
        self.assertIsNotNone(QUEUED.search(r.stdout), r.stdout.decode())


class MultiWorkerTest(NodeTestCase):
    workers = 2

    def test_two_shards_share_the_port_and_ids_are_unique(self):
        ids = []
        for i in range(12):
            r = swaks(self.node, "--to", f"r{i}@example.org")
            m = QUEUED.search(r.stdout)
            self.assertIsNotNone(m, r.stdout.decode())
            ids.append(m.group(1).decode())
        self.assertEqual(len(set(ids)), len(ids))
        total = sum(len(spooled_ids_shard(self.node, s)) for s in (0, 1))
        self.assertEqual(total, 12)
        self.assertEqual(len(self.node.worker_pids()), 2)


def spooled_ids_shard(node, shard):
    out = node.spool("list", "--json", shard=shard).decode().splitlines()
    return [l for l in out if l.strip()]


class ConfigErrorTest(unittest.TestCase):
    def test_unknown_key_refuses_to_start_and_names_the_key(self):
        node = Node(workers=1, extra_yaml="delivery: { smtp_prot: 25 }\n")
        self.addCleanup(node.close)
        r = subprocess.run([binary("posternd"), "--config", node.config_path],
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"delivery.smtp_prot", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(node.data_dir, "spool")))


if __name__ == "__main__":
    unittest.main()
