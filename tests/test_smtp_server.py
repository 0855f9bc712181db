"""The hardened ESMTP server against real clients and hostile input: each
bad input gets its reply and nothing is queued."""
import json
import re
import smtplib
import socket
import subprocess
import time
import unittest

from node import Node, read_reply, wait_for

QUEUED = re.compile(rb"250 2\.0\.0 Ok: queued as ([0-9A-F]+)")


def read_replies(sock, n):
    data = b""
    while len(re.findall(rb"(?:^|\r\n)\d{3} ", data)) < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


class ServerTest(unittest.TestCase):
    extra_yaml = ("limits: { max_message_size: 64KB, max_recipients: 3, "
                  "command_timeout: 2s, data_timeout: 4s }\n")

    def setUp(self):
        self.node = Node(workers=1, extra_yaml=self.extra_yaml, hold_delivery=True).start()
        self.addCleanup(self.node.close)

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.node.smtp_port), timeout=20)
        self.addCleanup(s.close)
        self.assertTrue(read_reply(s).startswith(b"220 "))
        return s

    def count(self):
        return int(self.node.spool("count").decode())

    def test_ehlo_advertises_the_extensions(self):
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=20) as s:
            s.ehlo("c.test")
            for ext in ("pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes",
                        "chunking", "dsn"):
                self.assertTrue(s.has_extn(ext), ext)
            self.assertEqual(s.esmtp_features["size"], str(64 * 1024))

    def test_pipelined_batch_answered_in_order(self):
        r = subprocess.run(["swaks", "--server", f"127.0.0.1:{self.node.smtp_port}", "--pipeline",
                            "--to", "a@example.com,b@example.com", "--timeout", "20"],
                           capture_output=True, timeout=60)
        out = r.stdout.decode()
        self.assertIsNotNone(QUEUED.search(r.stdout), out)
        s = self.connect()
        s.sendall(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@example.com>\r\n"
                  b"RCPT TO:<y@example.com>\r\nDATA\r\nSubject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        codes = [l[:3] for l in data.split(b"\r\n") if l and l[3:4] == b" "]
        self.assertEqual(codes, [b"250", b"250", b"250", b"250", b"354", b"250", b"221"], data)

    def test_bdat_chunks_and_last(self):
        s = self.connect()
        s.sendall(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@example.com>\r\n")
        read_replies(s, 3)
        part1 = b"Subject: chunked\r\n\r\nfirst "
        part2 = b"second\r\n"
        s.sendall(b"BDAT %d\r\n" % len(part1) + part1 + b"BDAT %d LAST\r\n" % len(part2) + part2)
        data = read_replies(s, 2)
        self.assertIn(b"250 2.0.0", data)
        m = QUEUED.search(data)
        self.assertIsNotNone(m, data)
        body = self.node.spool("body", m.group(1).decode())
        self.assertTrue(body.endswith(part1 + part2), body[-80:])

    def test_smtputf8_addresses_are_stored_intact(self):
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=20) as s:
            s.ehlo("c.test")
            refused = s.sendmail("jöran@example.com", ["δοκιμή@example.com"],
                                 "Subject: utf8\r\n\r\nhi\r\n".encode(),
                                 mail_options=["SMTPUTF8"])
            self.assertEqual(refused, {})
        entries = [json.loads(l) for l in self.node.spool("list", "--json").decode().splitlines()]
        self.assertEqual(entries[0]["sender"], "jöran@example.com")
        self.assertEqual(entries[0]["recipients"], ["δοκιμή@example.com"])

    def test_dsn_parameters_are_stored_with_the_message(self):
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=20) as s:
            s.ehlo("c.test")
            s.mail("a@b.test", ["RET=HDRS", "ENVID=abc+2B123"])
            s.rcpt("x@example.com", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;x@example.com"])
            code, resp = s.data(b"Subject: dsn\r\n\r\nhi\r\n")
            self.assertEqual(code, 250)
        queue_id = re.search(rb"queued as ([0-9A-F]+)", resp).group(1).decode()
        env = json.loads(self.node.spool("show", queue_id))
        self.assertEqual(env["dsn_ret"], "HDRS")
        self.assertEqual(env["dsn_envid"], "abc+2B123")
        self.assertEqual(env["recipients"][0]["notify"], "SUCCESS,FAILURE")
        self.assertEqual(env["recipients"][0]["orcpt"], "rfc822;x@example.com")

    def test_overlong_command_line(self):
        s = self.connect()
        s.sendall(b"EHLO " + b"a" * 600 + b"\r\n")
        self.assertTrue(read_reply(s).startswith(b"500 5.5.2"))

    def test_bare_lf_smuggling_refused_and_nothing_queued(self):
        s = self.connect()
        s.sendall(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@example.com>\r\nDATA\r\n")
        read_replies(s, 4)
        s.sendall(b"Subject: x\r\n\r\nhi\n.\nMAIL FROM:<smuggled@evil.test>\n"
                  b"RCPT TO:<victim@example.com>\nDATA\nsmuggled\n.\n\r\n.\r\n")
        reply = read_reply(s)
        self.assertTrue(reply.startswith(b"550 5.6.11"), reply)
        self.assertEqual(self.count(), 0)

    def test_message_too_large_and_too_many_recipients(self):
        s = self.connect()
        s.sendall(b"EHLO c.test\r\nMAIL FROM:<a@b.test> SIZE=999999999\r\n")
        self.assertIn(b"552 5.3.4", read_replies(s, 2))
        s.sendall(b"MAIL FROM:<a@b.test>\r\n")
        read_reply(s)
        for i in range(3):
            s.sendall(b"RCPT TO:<r%d@example.com>\r\n" % i)
            self.assertTrue(read_reply(s).startswith(b"250"))
        s.sendall(b"RCPT TO:<r9@example.com>\r\n")
        self.assertTrue(read_reply(s).startswith(b"452 4.5.3"))
        s.sendall(b"DATA\r\n")
        read_reply(s)
        s.sendall(b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 80 + b".\r\n")
        self.assertTrue(read_reply(s).startswith(b"552 5.3.4"))
        self.assertEqual(self.count(), 0)

    def test_error_limit_disconnects(self):
        s = self.connect()
        data = b""
        for _ in range(25):
            try:
                s.sendall(b"BOGUS\r\n")
            except OSError:
                break
            chunk = read_reply(s)
            data += chunk
            if not chunk or chunk.startswith(b"421"):
                break
        self.assertIn(b"421 4.7.0", data)
        wait_for(lambda: self.node.metric("postern_smtp_commands_total", 'verb="UNKNOWN"') >= 20,
                 what="unknown commands counted")

    def test_slow_drip_client_is_cut_off(self):
        s = self.connect()
        started = time.monotonic()
        reply = b""
        try:
            for byte in b"EHLO slow.client.test\r\n":
                s.sendall(bytes([byte]))
                time.sleep(0.3)
                s.setblocking(False)
                try:
                    reply += s.recv(4096)
                except BlockingIOError:
                    pass
                s.setblocking(True)
                if reply:
                    break
        except OSError:
            pass
        if not reply:
            reply = read_reply(s)
        self.assertTrue(reply.startswith(b"421 4.4.2"), reply)
        # command_timeout is 2 s; one byte every 0.3 s would otherwise last 7 s.
        self.assertLess(time.monotonic() - started, 5)

    def test_pregreet_talker_is_refused_patient_client_is_greeted(self):
        node = Node(workers=1, extra_yaml="limits: { greet_delay: 1s }\n").start()
        self.addCleanup(node.close)
        with socket.create_connection(("127.0.0.1", node.smtp_port), timeout=10) as s:
            s.sendall(b"EHLO eager.test\r\n")
            self.assertTrue(read_reply(s).startswith(b"421 4.7.0"))
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", node.smtp_port), timeout=10) as s:
            self.assertTrue(read_reply(s).startswith(b"220 "))
            self.assertGreaterEqual(time.monotonic() - started, 0.9)
        wait_for(lambda: node.metric("postern_messages_rejected_total", 'reason="pregreet"') == 1,
                 what="pregreet counted")

    def test_per_address_concurrency_and_rate_limits(self):
        # Loopback is untrusted here (trusted networks are exempt).
        node = Node(workers=1, relay_yaml="  accepted_domains: [example.com]\n"
                                          "  trusted_networks: [10.0.0.0/8]\n",
                    extra_yaml="limits: { max_connections_per_ip: 2, "
                               "max_connection_rate_per_ip: 4 }\n").start()
        self.addCleanup(node.close)
        held = []
        for _ in range(2):
            c = socket.create_connection(("127.0.0.1", node.smtp_port), timeout=10)
            self.addCleanup(c.close)
            self.assertTrue(read_reply(c).startswith(b"220 "))
            held.append(c)
        with socket.create_connection(("127.0.0.1", node.smtp_port), timeout=10) as c:
            self.assertTrue(read_reply(c).startswith(b"421 4.7.0 Too many connections"))
        for c in held:
            c.close()
        wait_for(lambda: node.metric("postern_connections_active") == 0,
                 what="closed connections released")
        # Two more connections use up the rate budget of 4 per minute.
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", node.smtp_port), timeout=10) as c:
                self.assertTrue(read_reply(c).startswith(b"220 "))
        with socket.create_connection(("127.0.0.1", node.smtp_port), timeout=10) as c:
            self.assertTrue(read_reply(c).startswith(b"421 4.7.0"))
        self.assertEqual(int(node.spool("count").decode()), 0)
        wait_for(lambda: node.metric("postern_connections_refused_total") == 2,
                 what="refusals counted")

    def test_not_an_open_relay(self):
        node = Node(workers=1, relay_yaml="  accepted_domains: [example.com]\n"
                                          "  trusted_networks: [10.0.0.0/8]\n",
                    hold_delivery=True).start()
        self.addCleanup(node.close)
        r = subprocess.run(["swaks", "--server", f"127.0.0.1:{node.smtp_port}", "--to",
                            "victim@elsewhere.example", "--timeout", "20"],
                           capture_output=True, timeout=60)
        self.assertIn(b"554 5.7.1 Relay access denied", r.stdout)
        r = subprocess.run(["swaks", "--server", f"127.0.0.1:{node.smtp_port}", "--to",
                            "local@example.com", "--timeout", "20"], capture_output=True,
                           timeout=60)
        self.assertIsNotNone(QUEUED.search(r.stdout))
        self.assertEqual(int(node.spool("count").decode()), 1)
        self.assertGreaterEqual(node.metric("postern_messages_rejected_total",
                                            'reason="relay_denied"'), 1)


if __name__ == "__main__":
    unittest.main()
