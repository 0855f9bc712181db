"""postern-sink, the benchmark and test receiver (bench/postern_sink_main.cc),
run for real: smtplib and swaks send to it in plaintext, with STARTTLS and
implicit TLS; its JSON lines, stats file, configured replies, TLS version cap,
delay and exit conditions are checked from the outside."""
import hashlib
import json
import os
import select
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from node import BIN, free_port, read_reply, wait_for
from sink_process import SINK, Sink, message, sha256
from tls_helpers import client_context, make_client_cert

class SinkTest(unittest.TestCase):
    def start(self, *args, tls=None):
        sink = Sink(*args, tls=tls)
        self.addCleanup(sink.close)
        return sink

    def test_binary_stays_on_the_boringssl_side(self):
        libs = subprocess.run(["ldd", SINK], capture_output=True, text=True, check=True).stdout
        for name in ("libssl.so.3", "libcrypto.so.3", "libgrpc"):
            self.assertNotIn(name, libs)
        for name in ("android/libssl.so", "android/libcrypto.so", "liburing"):
            self.assertIn(name, libs)

    def test_plaintext_record_hash_and_stats(self):
        sink = self.start()
        body = message("plain")
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as c:
            code, caps = c.ehlo("client.test")
            self.assertEqual(code, 250)
            for ext in (b"PIPELINING", b"CHUNKING", b"8BITMIME", b"SMTPUTF8", b"DSN"):
                self.assertIn(ext, caps)
            self.assertNotIn(b"STARTTLS", caps)
            refused = c.sendmail("a@sender.test", ["b@rcpt.test", "c@rcpt.test"], body,
                                 mail_options=["BODY=8BITMIME"],
                                 rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
            self.assertEqual(refused, {})
        [rec] = sink.wait_records(1)
        self.assertEqual(rec["sha256"], sha256(body))
        self.assertEqual(rec["size"], len(body))
        self.assertEqual(rec["mail_from"], "a@sender.test")
        self.assertEqual(rec["rcpt"], ["b@rcpt.test", "c@rcpt.test"])
        self.assertEqual(rec["rcpt_params"], [{"NOTIFY": "SUCCESS,FAILURE"}] * 2)
        self.assertEqual(rec["mail_params"], {"SIZE": str(len(body)), "BODY": "8BITMIME"})
        self.assertEqual(rec["helo"], "client.test")
        self.assertEqual(rec["transfer"], "DATA")
        self.assertIsNone(rec["tls"])
        stats = sink.wait_stats(messages=1, recipients=2, bytes=len(body), connections=1)
        self.assertEqual(stats["tls_handshakes"], 0)
        self.assertEqual(sink.stop(), 0)

    def test_starttls_records_version_cipher_and_sni(self):
        sink = self.start(tls="offer")
        body = message("over tls")
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as c:
            c.ehlo("client.test")
            self.assertTrue(c.has_extn("starttls"))
            c._host = "mx.rcpt.test"  # the name starttls() sends as SNI
            c.starttls(context=client_context())
            self.assertEqual(c.sock.version(), "TLSv1.3")
            code, caps = c.ehlo("client.test")
            self.assertNotIn(b"STARTTLS", caps)
            c.sendmail("a@sender.test", ["b@rcpt.test"], body)
        self.assertEqual(code, 250)
        [rec] = sink.wait_records(1)
        self.assertEqual(rec["sha256"], sha256(body))
        self.assertEqual(rec["tls"]["version"], "TLSv1.3")
        self.assertTrue(rec["tls"]["cipher"].startswith("TLS_"), rec["tls"])
        self.assertEqual(rec["tls"]["sni"], "mx.rcpt.test")
        sink.wait_stats(tls_handshakes=1, messages=1)

    def test_tls_max_12_gives_tls12_by_starttls_and_implicit(self):
        sink = self.start("--tls-max", "1.2", tls="offer")
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as c:
            c.starttls(context=client_context())
            self.assertEqual(c.sock.version(), "TLSv1.2")
            c.sendmail("a@sender.test", ["b@rcpt.test"], message("tls12"))
        [rec] = sink.wait_records(1)
        self.assertEqual(rec["tls"]["version"], "TLSv1.2")
        self.assertIsNone(rec["tls"]["sni"])
        # A client that insists on TLS 1.3 fails the handshake.
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as c:
            with self.assertRaises(ssl.SSLError):
                c.starttls(context=client_context(minimum=ssl.TLSVersion.TLSv1_3))
        sink.wait_stats(tls_handshakes=1, tls_failures=1)

        implicit = self.start("--tls-max", "1.2", tls="implicit")
        with smtplib.SMTP_SSL("127.0.0.1", implicit.port, timeout=10,
                              context=client_context()) as c:
            self.assertEqual(c.sock.version(), "TLSv1.2")
            code, caps = c.ehlo("client.test")
            self.assertNotIn(b"STARTTLS", caps)
            c.sendmail("a@sender.test", ["b@rcpt.test"], message("implicit"))
        [rec] = implicit.wait_records(1)
        self.assertEqual(rec["tls"]["version"], "TLSv1.2")

    def test_swaks_plain_pipelined_and_starttls(self):
        sink = self.start(tls="offer")
        base = ["swaks", "--server", f"127.0.0.1:{sink.port}", "--from", "s@sender.test",
                "--to", "r@rcpt.test", "--helo", "swaks.test", "--timeout", "10"]
        for extra in (["--pipeline"], ["--tls"]):
            out = subprocess.run(base + extra, capture_output=True, text=True, timeout=30)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("250 2.0.0 Ok: queued", out.stdout)
        plain, tls = sink.wait_records(2)
        self.assertIsNone(plain["tls"])
        self.assertEqual(tls["tls"]["version"], "TLSv1.3")
        self.assertEqual(plain["helo"], "swaks.test")
        self.assertEqual(plain["rcpt"], ["r@rcpt.test"])
        sink.wait_stats(messages=2, tls_handshakes=1)

    def test_configured_rcpt_rejection_reaches_the_client(self):
        sink = self.start("--reply-rcpt", "550 5.1.1 no such user", "--reject-rcpt", "nobody")
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as c:
            refused = c.sendmail("a@sender.test", ["b@rcpt.test", "nobody@rcpt.test"],
                                 message("partly"))
            self.assertEqual(refused, {"nobody@rcpt.test": (550, b"5.1.1 no such user")})
            with self.assertRaises(smtplib.SMTPRecipientsRefused):
                c.sendmail("a@sender.test", ["nobody@rcpt.test"], message("all refused"))
        [rec] = sink.wait_records(1)
        self.assertEqual(rec["rcpt"], ["b@rcpt.test"])
        sink.wait_stats(messages=1, recipients=1)

    def test_configured_data_reply_and_greeting(self):
        sink = self.start("--reply-data", "451 4.3.0 try later")
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as c:
            with self.assertRaises(smtplib.SMTPDataError) as e:
                c.sendmail("a@sender.test", ["b@rcpt.test"], message("deferred"))
            self.assertEqual(e.exception.smtp_code, 451)
        sink.wait_stats(messages=0, rejected_messages=1)
        self.assertEqual(sink.records(), [])

        busy = self.start("--greeting", "421 4.3.2 busy")
        with self.assertRaises(smtplib.SMTPConnectError) as e:
            smtplib.SMTP("127.0.0.1", busy.port, timeout=10)
        self.assertEqual(e.exception.smtp_code, 421)

    def test_no_ehlo_and_hidden_extensions(self):
        sink = self.start("--no-ehlo")
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as c:
            c.sendmail("a@sender.test", ["b@rcpt.test"], message("helo"))
            self.assertIsNotNone(c.helo_resp)
            self.assertFalse(c.does_esmtp)
        [rec] = sink.wait_records(1)
        self.assertFalse(rec["esmtp"])

        bare = self.start("--no-pipelining", "--no-chunking", "--no-8bitmime", "--no-smtputf8",
                          "--no-dsn")
        with smtplib.SMTP("127.0.0.1", bare.port, timeout=10) as c:
            code, caps = c.ehlo("client.test")
            for ext in (b"PIPELINING", b"CHUNKING", b"8BITMIME", b"SMTPUTF8", b"DSN"):
                self.assertNotIn(ext, caps)
            code, reply = c.mail("a@sender.test", ["BODY=8BITMIME"])
            self.assertEqual(code, 555)

    def test_bdat_and_pipelining_over_a_raw_socket(self):
        sink = self.start()
        chunk1, chunk2 = b"Subject: bdat\r\n\r\n.dot stays\r\n", b"no final newline"
        with socket.create_connection(("127.0.0.1", sink.port), timeout=10) as s:
            read_reply(s)
            s.sendall(b"EHLO raw.test\r\n")
            self.assertIn(b"CHUNKING", read_reply(s))
            s.sendall(b"MAIL FROM:<a@sender.test>\r\nRCPT TO:<b@rcpt.test>\r\n"
                      + b"BDAT %d\r\n" % len(chunk1) + chunk1
                      + b"BDAT %d LAST\r\n" % len(chunk2) + chunk2 + b"QUIT\r\n")
            data = b""
            while b"221 " not in data:
                more = s.recv(65536)
                if not more:
                    break
                data += more
        self.assertEqual(data, b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
                         + b"250 2.0.0 %d octets received\r\n" % len(chunk1)
                         + b"250 2.0.0 Ok: queued\r\n221 2.0.0 Bye\r\n")
        [rec] = sink.wait_records(1)
        self.assertEqual(rec["transfer"], "BDAT")
        self.assertEqual(rec["sha256"], sha256(chunk1 + chunk2))
        self.assertEqual(rec["size"], len(chunk1 + chunk2))

    def test_delay_is_per_connection_not_a_stalled_loop(self):
        sink = self.start("--delay-ms", "400")
        elapsed = []

        def send(i):
            with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as c:
                c.ehlo("client.test")
                c.mail("a@sender.test")
                c.rcpt("b@rcpt.test")
                start = time.monotonic()
                code, _ = c.data(message(f"slow {i}"))
                elapsed.append(time.monotonic() - start)
                self.assertEqual(code, 250)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(5)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        total = time.monotonic() - start
        self.assertEqual(len(elapsed), 5)
        self.assertGreaterEqual(min(elapsed), 0.38)
        # Five delays in parallel, not in series (5 x 0.4 s).
        self.assertLess(total, 1.6)
        sink.wait_stats(messages=5)

    def test_many_concurrent_connections(self):
        sink = self.start()
        socks = [socket.create_connection(("127.0.0.1", sink.port), timeout=10)
                 for _ in range(300)]
        try:
            for s in socks:
                self.assertTrue(read_reply(s).startswith(b"220 "))
            sink.wait_stats(connections=300, active_connections=300)
            for s in socks:
                s.sendall(b"QUIT\r\n")
            for s in socks:
                self.assertTrue(read_reply(s).startswith(b"221 "))
        finally:
            for s in socks:
                s.close()
        sink.wait_stats(active_connections=0)

    def test_max_messages_exits_zero_with_final_stats(self):
        sink = self.start("--max-messages", "2")
        for i in range(2):
            with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as c:
                c.sendmail("a@sender.test", ["b@rcpt.test"], message(f"m{i}"))
        self.assertEqual(sink.proc.wait(timeout=10), 0)
        self.assertEqual(sink.stats()["messages"], 2)
        self.assertEqual(len(sink.records()), 2)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", sink.port), timeout=2).close()

    def test_sigterm_says_421_and_exits_zero(self):
        sink = self.start()
        with socket.create_connection(("127.0.0.1", sink.port), timeout=10) as s:
            read_reply(s)
            s.sendall(b"EHLO c\r\n")
            read_reply(s)
            sink.proc.send_signal(signal.SIGTERM)
            self.assertTrue(read_reply(s).startswith(b"421 4.3.2"))
        self.assertEqual(sink.proc.wait(timeout=10), 0)
        self.assertEqual(sink.stats()["connections"], 1)


if __name__ == "__main__":
    unittest.main()
