"""PROXY protocol listeners: the client address comes from the header (a real
HAProxy with send-proxy-v2, and hand-written v1 headers), a connection
without a header is dropped, a header on a plain listener is refused, and
only the listener's proxy_protocol_from peers may send a header at all."""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import unittest

from node import Node, read_reply, free_port, wait_for

QUEUED = re.compile(rb"250 2\.0\.0 Ok: queued as ([0-9A-F]+)")


class ProxyListenerTest(unittest.TestCase):
    def setUp(self):
        self.plain_port = free_port()
        self.node = Node(workers=1, hold_delivery=True)
        text = open(self.node.config_path).read()
        # The listener behind the balancer expects PROXY from 127.0.0.1 (where
        # HAProxy and the raw-socket tests connect from); loopback is not
        # trusted, so relay decisions depend on the address in the header.
        text = text.replace(
            "tls: none, auth: none }",
            "tls: none, auth: none, proxy_protocol: true, "
            "proxy_protocol_from: [127.0.0.1/32] }\n"
            f"  - {{ name: plain, address: \"127.0.0.1:{self.plain_port}\", tls: none }}",
        ).replace("trusted_networks: [127.0.0.0/8]", "trusted_networks: [127.0.0.5/32]")
        open(self.node.config_path, "w").write(text)
        self.node.start()
        self.addCleanup(self.node.close)

    def test_haproxy_send_proxy_v2_passes_the_real_client(self):
        if shutil.which("haproxy") is None:
            self.skipTest("haproxy not installed")
        front = free_port()
        tmp = tempfile.mkdtemp(prefix="postern-haproxy-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cfg = os.path.join(tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(f"""global
  maxconn 100
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend smtp
  bind 127.0.0.1:{front}
  default_backend postern
backend postern
  server node 127.0.0.1:{self.node.smtp_port} send-proxy-v2
""")
        proc = subprocess.Popen(["haproxy", "-f", cfg, "-db"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (proc.send_signal(signal.SIGTERM), proc.wait(10)))

        def port_open():
            try:
                socket.create_connection(("127.0.0.1", front), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(port_open, what="haproxy listening")
        # From 127.0.0.5 (trusted) relaying to a foreign domain works; the
        # balancer's own address 127.0.0.1 would not be allowed to.
        r = subprocess.run(["swaks", "--server", f"127.0.0.1:{front}", "--local-interface",
                            "127.0.0.5", "--to", "x@foreign.example", "--timeout", "20"],
                           capture_output=True, timeout=60)
        m = QUEUED.search(r.stdout)
        self.assertIsNotNone(m, r.stdout.decode() + self.node.logs())
        body = self.node.spool("body", m.group(1).decode())
        self.assertIn(b"[127.0.0.5]", body.split(b"\r\n\r\n", 1)[0])
        self.assertIn("client=127.0.0.5", self.node.logs())
        # From 127.0.0.6 (untrusted) the same relay is refused.
        r = subprocess.run(["swaks", "--server", f"127.0.0.1:{front}", "--local-interface",
                            "127.0.0.6", "--to", "x@foreign.example", "--quit-after", "RCPT",
                            "--timeout", "20"], capture_output=True, timeout=60)
        self.assertIn(b"554 5.7.1", r.stdout, r.stdout.decode())

    def test_v1_header_sets_the_client_and_pipelined_bytes_survive(self):
        with socket.create_connection(("127.0.0.1", self.node.smtp_port), timeout=10) as s:
            s.sendall(b"PROXY TCP4 127.0.0.5 127.0.0.1 40000 25\r\n")
            self.assertTrue(read_reply(s).startswith(b"220 "))
            s.sendall(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@foreign.example>\r\n")
            replies = b""
            while replies.count(b"\r\n250 ") + replies.startswith(b"250 ") < 2:
                chunk = s.recv(4096)
                if not chunk:
                    break
                replies += chunk
            self.assertIn(b"250 2.1.5", replies, replies)

    def test_untrusted_address_in_header_cannot_relay(self):
        with socket.create_connection(("127.0.0.1", self.node.smtp_port), timeout=10) as s:
            s.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n")
            read_reply(s)
            s.sendall(b"EHLO c.test\r\n")
            read_reply(s)
            s.sendall(b"MAIL FROM:<a@b.test>\r\n")
            read_reply(s)
            s.sendall(b"RCPT TO:<x@foreign.example>\r\n")
            self.assertTrue(read_reply(s).startswith(b"554 5.7.1"))

    def test_connection_without_header_is_closed_without_greeting(self):
        with socket.create_connection(("127.0.0.1", self.node.smtp_port), timeout=10) as s:
            s.sendall(b"EHLO sneaky.test\r\n")
            self.assertEqual(s.recv(4096), b"")
        wait_for(lambda: self.node.metric("postern_messages_rejected_total",
                                          'reason="proxy_header"') >= 1,
                 what="proxy_header rejection counted")

    def test_header_on_a_plain_listener_is_a_protocol_error(self):
        with socket.create_connection(("127.0.0.1", self.plain_port), timeout=10) as s:
            self.assertTrue(read_reply(s).startswith(b"220 "))
            s.sendall(b"PROXY TCP4 127.0.0.5 127.0.0.1 40000 25\r\n")
            self.assertTrue(read_reply(s).startswith(b"500 5.5.2"))


def read_until_closed(sock, timeout=20):
    """Everything the server sends until it closes. A server that closes
    without reading what was sent ends with a reset; what arrived before it
    is still returned."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


class ProxyFromTest(unittest.TestCase):
    """Issue 14: only the load balancer may speak PROXY. The listener takes
    headers from 127.0.0.2 only, and 10.9.9.0/24 is trusted: a header naming
    10.9.9.9 sent by anyone else would make the node an open relay."""

    FORGED = b"PROXY TCP4 10.9.9.9 127.0.0.1 40000 25\r\n"

    def setUp(self):
        self.node = Node(
            workers=1, hold_delivery=True,
            listeners={"lb": "tls: none, auth: none, proxy_protocol: true, "
                             "proxy_protocol_from: [127.0.0.2/32]"},
            relay_yaml="  accepted_domains: [example.com]\n  trusted_networks: [10.9.9.0/24]\n")
        self.node.start()
        self.addCleanup(self.node.close)

    def connect_from(self, source):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(10)
        s.bind((source, 0))
        s.connect(("127.0.0.1", self.node.smtp_port))
        return s

    def test_forged_header_from_outside_the_list_is_refused_unread(self):
        with self.connect_from("127.0.0.1") as s:
            s.sendall(self.FORGED +
                      b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n"
                      b"RCPT TO:<victim@foreign.test>\r\nDATA\r\n"
                      b"Subject: relayed\r\n\r\nspam\r\n.\r\nQUIT\r\n")
            got = read_until_closed(s)
        self.assertTrue(got.startswith(b"421 4.7.1 "), got)
        self.assertNotIn(b"\n250", b"\n" + got)
        self.assertNotIn(b"220 ", got)
        wait_for(lambda: self.node.metric("postern_proxy_refused_total", 'listener="lb"') == 1,
                 what="proxy refusal counted")
        logs = self.node.logs()
        self.assertRegex(logs, r"event=proxy_refused .*peer=127\.0\.0\.1")
        self.assertNotIn("10.9.9.9", logs)  # the header was never parsed
        self.assertEqual(self.node.metric("postern_messages_accepted_total"), 0)
        self.assertEqual(self.node.metric("postern_smtp_commands_total"), 0)
        self.assertEqual(int(self.node.spool("count")), 0)

    def test_a_client_waiting_for_the_greeting_reads_the_421(self):
        with self.connect_from("127.0.0.1") as s:
            got = read_until_closed(s)
        self.assertEqual(
            got, b"421 4.7.1 Error: this listener only accepts connections from its load "
                 b"balancers\r\n")

    def test_the_same_header_from_the_balancer_is_believed(self):
        with self.connect_from("127.0.0.2") as s:
            s.sendall(self.FORGED)
            self.assertTrue(read_reply(s).startswith(b"220 "))
            s.sendall(b"EHLO c.test\r\n")
            self.assertTrue(read_reply(s).startswith(b"250"))
            s.sendall(b"MAIL FROM:<a@b.test>\r\n")
            self.assertTrue(read_reply(s).startswith(b"250 "))
            s.sendall(b"RCPT TO:<victim@foreign.test>\r\n")
            reply = read_reply(s)
            self.assertTrue(reply.startswith(b"250 2.1.5"), reply)
            s.sendall(b"DATA\r\n")
            self.assertTrue(read_reply(s).startswith(b"354 "))
            s.sendall(b"Subject: via the balancer\r\n\r\nok\r\n.\r\n")
            m = QUEUED.search(read_reply(s))
            self.assertIsNotNone(m, self.node.logs())
        body = self.node.spool("body", m.group(1).decode())
        self.assertIn(b"[10.9.9.9]", body.split(b"\r\n\r\n", 1)[0])
        self.assertIn("client=10.9.9.9", self.node.logs())
        self.assertEqual(self.node.metric("postern_proxy_refused_total"), 0)


if __name__ == "__main__":
    unittest.main()
