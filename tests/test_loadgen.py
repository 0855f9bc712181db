"""postern-loadgen (bench/postern_loadgen_main.cc) against postern-sink:
plaintext, STARTTLS with reused connections, implicit TLS with a new
connection per message and session resumption, refused recipients, an open
loop on a timetable. Every run's --json totals are checked against what the
sink counted and recorded."""
import json
import os
import subprocess
import time
import unittest

from node import BIN, free_port
from sink_process import Sink

LOADGEN = os.path.join(BIN, "bench/postern-loadgen")


class LoadgenTest(unittest.TestCase):
    def sink(self, *args, tls=None):
        sink = Sink(*args, tls=tls)
        self.addCleanup(sink.close)
        return sink

    def loadgen(self, sink, *args, expect_rc=0):
        argv = [LOADGEN, "--target", f"127.0.0.1:{sink.port}", "--json", "--quiet", *args]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, expect_rc, out.stdout + out.stderr)
        return json.loads(out.stdout)

    def assert_matches_sink(self, sink, totals, **extra):
        """The sink saw exactly what the load generator says it sent."""
        expected = {"messages": totals["acknowledged"],
                    "recipients": totals["recipients_accepted"],
                    "bytes": totals["bytes"],
                    "connections": totals["connections"],
                    "tls_handshakes": totals["tls_handshakes"],
                    "active_connections": 0, **extra}
        stats = sink.wait_stats(**expected)
        records = sink.wait_records(totals["acknowledged"])
        self.assertEqual(len(records), totals["acknowledged"])
        self.assertEqual(sum(r["size"] for r in records), totals["bytes"])
        # Every message is different (its Message-ID), so every hash is.
        self.assertEqual(len({r["sha256"] for r in records}), len(records))
        return stats, records

    def test_binary_stays_on_the_boringssl_side(self):
        libs = subprocess.run(["ldd", LOADGEN], capture_output=True, text=True,
                              check=True).stdout
        for name in ("libssl.so.3", "libcrypto.so.3", "libgrpc"):
            self.assertNotIn(name, libs)
        for name in ("android/libssl.so", "liburing"):
            self.assertIn(name, libs)

    def test_plaintext_200_messages(self):
        sink = self.sink()
        t = self.loadgen(sink, "--messages", "200", "--connections", "5", "--size", "2k",
                         "--from", "lg@sender.test", "--to", "r%d@rcpt.test")
        self.assertEqual(t["sent"], 200)
        self.assertEqual(t["acknowledged"], 200)
        self.assertEqual(t["rejected"], {})
        self.assertEqual((t["failed"], t["not_sent"], t["connection_errors"]), (0, 0, 0))
        self.assertEqual(t["connections"], 5)
        self.assertEqual(t["bytes"], 200 * 2048)
        self.assertEqual(t["tls_handshakes"], 0)
        self.assertGreater(t["msgs_per_s"], 0)
        for phase in ("connect", "mail_to_data", "data_end_to_250", "message"):
            lat = t["latency_ms"][phase]
            self.assertGreater(lat["count"], 0, phase)
            self.assertLessEqual(lat["p50"], lat["p99"], phase)
            self.assertLessEqual(lat["p99"], lat["max"], phase)
        self.assertEqual(t["latency_ms"]["message"]["count"], 200)
        self.assertEqual(t["latency_ms"]["tls_handshake"]["count"], 0)
        _, records = self.assert_matches_sink(sink, t)
        self.assertEqual({r["mail_from"] for r in records}, {"lg@sender.test"})
        rcpts = sorted(r["rcpt"][0] for r in records)
        self.assertEqual(rcpts, sorted(f"r{i}@rcpt.test" for i in range(1, 201)))
        self.assertTrue(all(r["tls"] is None and r["helo"] == "loadgen.test" for r in records))
        self.assertEqual(sink.stop(), 0)

    def test_starttls_10_connections_of_20_messages(self):
        sink = self.sink(tls="offer")
        t = self.loadgen(sink, "--mode", "starttls", "--connections", "10",
                         "--messages-per-connection", "20", "--messages", "200",
                         "--recipients", "2", "--pipelining", "off", "--chunking", "off")
        self.assertEqual((t["sent"], t["acknowledged"]), (200, 200))
        self.assertEqual((t["connections"], t["tls_handshakes"]), (10, 10))
        self.assertEqual(t["connection_errors"], 0)
        self.assertEqual(t["recipients_accepted"], 400)
        self.assertEqual(t["latency_ms"]["tls_handshake"]["count"], 10)
        _, records = self.assert_matches_sink(sink, t, tls_failures=0)
        for r in records:
            self.assertEqual(r["tls"]["version"], "TLSv1.3")
            self.assertEqual(r["transfer"], "DATA")
            self.assertEqual(len(r["rcpt"]), 2)

    def test_implicit_tls_new_connection_per_message_resumes(self):
        sink = self.sink("--tls-max", "1.2", tls="implicit")
        t = self.loadgen(sink, "--mode", "implicit", "--connections", "4",
                         "--messages-per-connection", "1", "--messages", "40",
                         "--size-mix", "3:1000,1:20k")
        self.assertEqual((t["sent"], t["acknowledged"]), (40, 40))
        self.assertEqual((t["connections"], t["tls_handshakes"]), (40, 40))
        # Only the first handshake of each pooled context is a full one.
        self.assertGreaterEqual(t["resumed_sessions"], 30)
        _, records = self.assert_matches_sink(sink, t)
        self.assertTrue(all(r["tls"]["version"] == "TLSv1.2" for r in records))
        self.assertEqual({r["size"] for r in records}, {1000, 20480})
        self.assertEqual({r["transfer"] for r in records}, {"BDAT"})

        off = self.sink(tls="implicit")
        t = self.loadgen(off, "--mode", "implicit", "--connections", "2",
                         "--messages-per-connection", "1", "--messages", "10",
                         "--resume", "off", "--tls-version", "1.3")
        self.assertEqual((t["acknowledged"], t["tls_handshakes"]), (10, 10))
        self.assertEqual(t["resumed_sessions"], 0)
        _, records = self.assert_matches_sink(off, t)
        self.assertTrue(all(r["tls"]["version"] == "TLSv1.3" for r in records))

    def test_refused_recipients_are_counted_by_reply_code(self):
        sink = self.sink("--reply-rcpt", "550 5.1.1 no such user", "--reject-rcpt", "7@")
        t = self.loadgen(sink, "--messages", "200", "--connections", "4",
                         "--to", "u%d@rcpt.test")
        # u7, u17, ..., u197: every tenth message has its only recipient refused.
        self.assertEqual(t["rejected"], {"550": 20})
        self.assertEqual((t["sent"], t["acknowledged"]), (200, 180))
        self.assertEqual(t["connection_errors"], 0)
        self.assertEqual(t["latency_ms"]["message"]["count"], 180)
        self.assert_matches_sink(sink, t)

        # Two recipients, one refused: the message still goes, the refusal is
        # counted per recipient.
        t = self.loadgen(sink, "--messages", "10", "--connections", "1", "--recipients", "2",
                         "--to", "v%d@rcpt.test")
        self.assertEqual(t["acknowledged"], 10)
        self.assertEqual(t["recipients_rejected"], {"550": 2})
        self.assertEqual(t["recipients_accepted"], 18)

        # Nothing acknowledged: non-zero exit, rejects still reported.
        t = self.loadgen(sink, "--messages", "30", "--connections", "3",
                         "--to", "x7@rcpt.test", expect_rc=1)
        self.assertEqual((t["acknowledged"], t["rejected"]), (0, {"550": 30}))

    def test_data_refusals_and_a_dead_target(self):
        sink = self.sink("--reply-data", "451 4.3.0 try later")
        t = self.loadgen(sink, "--messages", "20", "--connections", "2", expect_rc=1)
        self.assertEqual(t["rejected"], {"451": 20})
        self.assertEqual(t["latency_ms"]["data_end_to_250"]["count"], 20)
        sink.wait_stats(messages=0, rejected_messages=20)

        dead = subprocess.run([LOADGEN, "--target", f"127.0.0.1:{free_port()}", "--quiet"],
                              capture_output=True, text=True, timeout=30)
        self.assertEqual(dead.returncode, 1)
        self.assertIn("cannot connect", dead.stderr)

        usage = subprocess.run([LOADGEN, "--size-mix", "60:4096,40"], capture_output=True,
                               text=True, timeout=10)
        self.assertEqual(usage.returncode, 2)
        self.assertIn("--size-mix", usage.stderr)

    def test_open_loop_follows_the_timetable(self):
        sink = self.sink()
        start = time.monotonic()
        t = self.loadgen(sink, "--rate", "200", "--messages", "100", "--connections", "5")
        took = time.monotonic() - start
        self.assertEqual(t["acknowledged"], 100)
        # The last of 100 starts at 99 / 200 s: not sooner, and not much later.
        self.assertGreaterEqual(t["elapsed_s"], 0.495)
        self.assertLess(t["elapsed_s"], 2.0)
        self.assertGreaterEqual(took, 0.495)
        self.assert_matches_sink(sink, t)

    def test_open_loop_latency_counts_the_wait_for_a_slow_server(self):
        # One connection to a server that takes 100 ms per message, asked for
        # 50 messages a second: each message waits for the one before, and
        # its latency runs from when it should have started.
        sink = self.sink("--delay-ms", "100")
        t = self.loadgen(sink, "--rate", "50", "--messages", "8", "--connections", "1")
        self.assertEqual(t["acknowledged"], 8)
        lat = t["latency_ms"]
        self.assertLess(lat["data_end_to_250"]["max"], 400)
        # The 8th was due at 140 ms and answered after about 800 ms.
        self.assertGreater(lat["message"]["max"], 550)
        self.assertEqual(t["overdue"], 0)

        t = self.loadgen(sink, "--rate", "50", "--duration", "0.5", "--connections", "1")
        self.assertGreater(t["overdue"], 10)
        self.assertLessEqual(t["acknowledged"], 6)

    def test_duration_bounds_a_run(self):
        sink = self.sink()
        start = time.monotonic()
        t = self.loadgen(sink, "--duration", "1", "--connections", "2", "--rate", "50")
        self.assertLess(time.monotonic() - start, 5)
        self.assertGreaterEqual(t["acknowledged"], 45)
        self.assertLessEqual(t["acknowledged"], 52)
        self.assert_matches_sink(sink, t)


if __name__ == "__main__":
    unittest.main()
