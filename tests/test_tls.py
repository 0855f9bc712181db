"""TLS termination and authentication with real clients: smtplib, swaks,
openssl s_client; STARTTLS injection; per-partner inbound policy."""
import base64
import os
import re
import socket
import ssl
import smtplib
import subprocess
import tempfile
import time
import unittest

from node import Node, read_reply, binary, wait_for
from tls_helpers import client_context, make_client_cert, spki_fingerprint

QUEUED = re.compile(rb"queued as ([0-9A-F]+)")
LISTENERS = {
    "mta": "tls: offer, auth: none",
    "submission": "tls: require, auth: after_tls",
    "submissions": "tls: implicit, auth: after_tls",
}


def received_header(node, queue_id):
    body = node.spool("body", queue_id)
    return body.split(b"\r\n\r\n", 1)[0].split(b"\r\nReceived:", 1)[0].decode()


class TlsNodeTest(unittest.TestCase):
    relay_yaml = "  accepted_domains: [example.com]\n  trusted_networks: [127.0.0.0/8]\n"
    extra_yaml = ""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="postern-tls-")
        self.addCleanup(self.tmp.cleanup)
        self.prepare()
        self.node = Node(workers=1, listeners=LISTENERS, relay_yaml=self.relay_yaml,
                         hold_delivery=True,
                         extra_yaml=self.extra_yaml).start()
        self.addCleanup(self.node.close)

    def prepare(self):
        pass

    def port(self, name):
        return self.node.ports[name]


class ListenerTlsTest(TlsNodeTest):
    def test_starttls_with_smtplib_records_tls_in_received(self):
        with smtplib.SMTP("127.0.0.1", self.port("mta"), timeout=20) as s:
            s.ehlo("client.test")
            self.assertTrue(s.has_extn("starttls"))
            s.starttls(context=client_context())
            s.ehlo("client.test")
            self.assertFalse(s.has_extn("starttls"))
            s.mail("a@example.com")
            s.rcpt("b@example.org")
            code, resp = s.data(b"Subject: tls\r\n\r\nover tls\r\n")
            self.assertEqual(code, 250)
        header = received_header(self.node, QUEUED.search(resp).group(1).decode())
        self.assertRegex(header, r"with ESMTPS tls TLS_AES_\d+_GCM_SHA\d+")
        self.assertRegex(header, r"\(using TLSv1\.3 with cipher TLS_AES_\d+_GCM_SHA\d+ \(\d+/\d+ bits\)\)")

    def test_plaintext_received_has_no_tls_details(self):
        with smtplib.SMTP("127.0.0.1", self.port("mta"), timeout=20) as s:
            s.ehlo("client.test")
            s.mail("a@example.com")
            s.rcpt("b@example.org")
            code, resp = s.data(b"Subject: plain\r\n\r\nplain\r\n")
        header = received_header(self.node, QUEUED.search(resp).group(1).decode())
        self.assertIn("with ESMTP id", header)
        self.assertNotIn("ESMTPS", header)
        self.assertNotIn("using TLS", header)

    def test_implicit_tls_greets_inside_tls(self):
        with smtplib.SMTP_SSL("127.0.0.1", self.port("submissions"), timeout=20,
                              context=client_context()) as s:
            code, _ = s.ehlo("client.test")
            self.assertEqual(code, 250)
            self.assertIn("PLAIN", s.esmtp_features.get("auth", "").upper())
            self.assertFalse(s.has_extn("starttls"))

    def test_require_listener_refuses_mail_before_starttls(self):
        with smtplib.SMTP("127.0.0.1", self.port("submission"), timeout=20) as s:
            s.ehlo("client.test")
            self.assertNotIn("auth", s.esmtp_features)
            code, msg = s.docmd("MAIL FROM:<a@example.com>")
            self.assertEqual(code, 530)
            self.assertIn(b"5.7.0 Must issue a STARTTLS command first", msg)
            code, msg = s.docmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==")
            self.assertEqual(code, 538)
            self.assertIn(b"5.7.11", msg)

    def test_openssl_s_client_starttls_and_implicit(self):
        for args in (["-starttls", "smtp", "-connect", f"127.0.0.1:{self.port('mta')}"],
                     ["-connect", f"127.0.0.1:{self.port('submissions')}"]):
            r = subprocess.run(["openssl", "s_client", "-brief", *args], input=b"QUIT\r\n",
                               capture_output=True, timeout=30)
            out = r.stdout.decode() + r.stderr.decode()
            self.assertIn("Protocol version: TLSv1.3", out, out)

    def test_old_protocols_are_refused_and_counted(self):
        r = subprocess.run(["openssl", "s_client", "-brief", "-tls1_1", "-connect",
                            f"127.0.0.1:{self.port('submissions')}"], input=b"",
                           capture_output=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        wait_for(lambda: self.node.metric("postern_tls_handshakes_total",
                                          'listener="submissions",version="none"') >= 1,
                 what="failed handshake counted")
        # TLS 1.2 is allowed by the default min_version.
        ctx = client_context(maximum=ssl.TLSVersion.TLSv1_2)
        with socket.create_connection(("127.0.0.1", self.port("submissions")), timeout=10) as raw:
            with ctx.wrap_socket(raw) as s:
                self.assertEqual(s.version(), "TLSv1.2")
                self.assertTrue(read_reply(s).startswith(b"220 "))
        wait_for(lambda: self.node.metric(
            "postern_tls_handshakes_total",
            'listener="submissions",version="TLSv1.2",cipher_class="strong",result="ok"') == 1,
                 what="TLS 1.2 handshake counted as strong")

    def test_starttls_injection_is_discarded(self):
        with socket.create_connection(("127.0.0.1", self.port("mta")), timeout=10) as raw:
            read_reply(raw)
            raw.sendall(b"EHLO c.test\r\n")
            read_reply(raw)
            # The classic injection: a command pipelined behind STARTTLS in
            # the same packet must never be executed inside the TLS session.
            raw.sendall(b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")
            self.assertTrue(read_reply(raw).startswith(b"220 2.0.0"))
            with client_context().wrap_socket(raw) as s:
                s.sendall(b"MAIL FROM:<a@example.com>\r\n")
                # Had the injected MAIL run, this would be "503 nested MAIL";
                # the session was reset, so EHLO is required first.
                reply = read_reply(s)
                self.assertTrue(reply.startswith(b"503 5.5.1"), reply)
                s.sendall(b"EHLO c.test\r\n")
                read_reply(s)
                s.sendall(b"MAIL FROM:<a@example.com>\r\n")
                self.assertTrue(read_reply(s).startswith(b"250 "))
        wait_for(lambda: self.node.metric("postern_starttls_discarded_bytes_total") > 0,
                 what="discarded bytes counted")

    def test_default_certificate_is_generated_private_and_reused(self):
        key = os.path.join(self.node.data_dir, "certs", "default-ecdsa.key")
        cert = os.path.join(self.node.data_dir, "certs", "default-ecdsa.crt")
        self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
        before = open(cert, "rb").read()
        self.node.stop()
        self.node.start()
        self.assertEqual(open(cert, "rb").read(), before)
        r = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-text"], capture_output=True,
                           text=True, check=True)
        self.assertIn("prime256v1", r.stdout)
        self.assertIn("ecdsa-with-SHA256", r.stdout)

    def test_session_resumption_with_tickets(self):
        ctx = client_context()
        with smtplib.SMTP_SSL("127.0.0.1", self.port("submissions"), timeout=20, context=ctx) as s:
            s.ehlo("c.test")
            session = s.sock.session
        with socket.create_connection(("127.0.0.1", self.port("submissions")), timeout=10) as raw:
            with ctx.wrap_socket(raw, session=session) as s:
                read_reply(s)
                self.assertTrue(s.session_reused)


def _auth_plain(s):
    token = base64.b64encode(f"\0{s.user}\0{s.password}".encode()).decode()
    return s.docmd("AUTH", f"PLAIN {token}")


class CertificateReloadTest(TlsNodeTest):
    def prepare(self):
        self.cert = os.path.join(self.tmp.name, "server.crt")
        self.key = os.path.join(self.tmp.name, "server.key")
        self.install_cert("first.test")
        self.extra_yaml = (f"tls:\n  certificates:\n    - {{ name: main, cert_file: {self.cert}, "
                           f"key_file: {self.key} }}\n")

    def install_cert(self, cn):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.key, "-out", self.cert,
                        "-subj", f"/CN={cn}", "-days", "2"], check=True, capture_output=True)

    def peer_cn(self):
        with socket.create_connection(("127.0.0.1", self.port("submissions")), timeout=10) as raw:
            with client_context().wrap_socket(raw) as s:
                der = s.getpeercert(binary_form=True)
        pem = ssl.DER_cert_to_PEM_cert(der)
        out = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem.encode(),
                             capture_output=True, check=True).stdout.decode()
        return out.strip().rsplit("=", 1)[1].strip()

    def test_sighup_loads_new_certificate_and_keeps_open_sessions(self):
        self.assertEqual(self.peer_cn(), "first.test")
        raw = socket.create_connection(("127.0.0.1", self.port("submissions")), timeout=10)
        old = client_context().wrap_socket(raw)
        self.addCleanup(old.close)
        self.assertTrue(read_reply(old).startswith(b"220 "))
        self.install_cert("second.test")
        self.node.proc.send_signal(__import__("signal").SIGHUP)
        wait_for(lambda: "config_acked" in self.node.logs(), what="reload acknowledged")
        self.assertEqual(self.peer_cn(), "second.test")
        old.sendall(b"NOOP\r\n")
        self.assertTrue(read_reply(old).startswith(b"250 "))


class AuthTest(TlsNodeTest):
    relay_yaml = ("  accepted_domains: [example.com]\n  trusted_networks: [10.0.0.0/8]\n"
                  "  users_file: USERS\n  sender_login_match: true\n")

    def prepare(self):
        users = os.path.join(self.tmp.name, "users")
        r = subprocess.run([binary("postern-passwd"), users, "alice", "--domains", "example.com"],
                           input=b"correct horse\n", capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(os.stat(users).st_mode & 0o777, 0o600)
        self.assertNotIn(b"correct horse", open(users, "rb").read())
        self.relay_yaml = self.relay_yaml.replace("USERS", users)

    def login(self, password):
        s = smtplib.SMTP("127.0.0.1", self.port("submission"), timeout=30)
        s.ehlo("c.test")
        s.starttls(context=client_context())
        s.ehlo("c.test")
        # One mechanism per attempt (smtplib.login would fall back from PLAIN
        # to LOGIN and make two attempts).
        s.user, s.password = "alice", password
        code, _ = _auth_plain(s)
        if code != 235:
            s.close()
            return code, None
        return code, s

    def test_authenticated_user_relays_and_credentials_stay_out_of_logs(self):
        s = smtplib.SMTP("127.0.0.1", self.port("submission"), timeout=30)
        s.ehlo("c.test")
        s.starttls(context=client_context())
        s.ehlo("c.test")
        code, _ = s.login("alice", "correct horse")
        self.assertEqual(code, 235)
        with s:
            s.mail("alice@example.com")
            code, _ = s.rcpt("bob@elsewhere.example")
            self.assertEqual(code, 250)
            code, resp = s.data(b"Subject: auth\r\n\r\nhi\r\n")
            self.assertEqual(code, 250)
        header = received_header(self.node, QUEUED.search(resp).group(1).decode())
        self.assertIn("with ESMTPSA", header)
        logs = self.node.logs()
        self.assertNotIn("correct horse", logs)
        self.assertNotIn(base64.b64encode(b"\0alice\0correct horse").decode(), logs)

    def test_swaks_auth_over_starttls_and_implicit_tls(self):
        for args in (["--server", f"127.0.0.1:{self.port('submission')}", "--tls",
                      "--auth", "PLAIN"],
                     ["--server", f"127.0.0.1:{self.port('submissions')}", "--tlsc",
                      "--auth", "LOGIN"]):
            r = subprocess.run(["swaks", *args, "--auth-user", "alice", "--auth-password",
                                "correct horse", "--from", "alice@example.com", "--to",
                                "bob@elsewhere.example", "--timeout", "30"],
                               capture_output=True, timeout=60)
            out = r.stdout.decode()
            self.assertIn("235 2.7.0 Authentication successful", out, out)
            self.assertIsNotNone(QUEUED.search(r.stdout), out)

    def test_unauthenticated_untrusted_client_cannot_relay(self):
        with smtplib.SMTP("127.0.0.1", self.port("mta"), timeout=20) as s:
            s.ehlo("c.test")
            s.mail("a@example.org")
            code, msg = s.rcpt("bob@elsewhere.example")
            self.assertEqual(code, 554)
            self.assertIn(b"5.7.1 Relay access denied", msg)

    def test_sender_must_match_the_users_domains(self):
        code, s = self.login("correct horse")
        with s:
            code, msg = s.docmd("MAIL FROM:<mallory@other.example>")
            self.assertEqual(code, 553)

    def test_wrong_password_then_throttled(self):
        codes = [self.login("wrong")[0] for _ in range(5)]
        self.assertEqual(codes, [535] * 5)
        self.assertEqual(self.login("correct horse")[0], 454)
        wait_for(lambda: self.node.metric("postern_auth_attempts_total", 'result="throttled"') >= 1,
                 what="throttle counted")


class PartnerPolicyTest(TlsNodeTest):
    relay_yaml = ("  accepted_domains: [example.com, secure.example]\n"
                  "  require_tls_domains: [secure.example]\n"
                  "  trusted_networks: [127.0.0.0/8]\n")

    def test_tls_only_recipient_domain(self):
        with smtplib.SMTP("127.0.0.1", self.port("mta"), timeout=20) as s:
            s.ehlo("c.test")
            s.mail("a@other.example")
            code, msg = s.rcpt("x@secure.example")
            self.assertEqual(code, 530, msg)
            self.assertEqual(s.rcpt("x@example.com")[0], 250)
        with smtplib.SMTP("127.0.0.1", self.port("mta"), timeout=20) as s:
            s.ehlo("c.test")
            s.starttls(context=client_context())
            s.ehlo("c.test")
            s.mail("a@other.example")
            self.assertEqual(s.rcpt("x@secure.example")[0], 250)

    def prepare(self):
        self.good_cert, self.good_key, good_fp = make_client_cert(self.tmp.name, "partner")
        self.bad_cert, self.bad_key, _ = make_client_cert(self.tmp.name, "impostor")
        self.spki_cert, self.spki_key, _ = make_client_cert(self.tmp.name, "spki")
        spki = spki_fingerprint(self.spki_cert)
        self.extra_yaml = f"""partners:
  - domain: tls-only.example
    inbound: {{ require_tls: true }}
  - domain: pinned.example
    inbound: {{ require_tls: true, pins: ["sha256:{good_fp}", "sha256:{spki}"] }}
"""

    def mail_from(self, sender, context=None):
        with smtplib.SMTP("127.0.0.1", self.port("mta"), timeout=20) as s:
            s.ehlo("c.test")
            if context is not None:
                s.starttls(context=context)
                s.ehlo("c.test")
            return s.docmd(f"MAIL FROM:<{sender}>")

    def test_require_tls_partner_refused_in_plaintext_accepted_over_tls(self):
        code, msg = self.mail_from("a@tls-only.example")
        self.assertEqual(code, 530)
        self.assertIn(b"5.7.0", msg)
        code, _ = self.mail_from("a@tls-only.example", client_context())
        self.assertEqual(code, 250)
        # Other senders are unaffected.
        self.assertEqual(self.mail_from("a@other.example")[0], 250)

    def test_pinned_partner_needs_the_right_client_certificate(self):
        code, msg = self.mail_from("a@pinned.example", client_context())
        self.assertEqual(code, 530, msg)
        code, msg = self.mail_from("a@pinned.example",
                                   client_context(self.bad_cert, self.bad_key))
        self.assertEqual(code, 550, msg)
        self.assertIn(b"5.7.1", msg)
        code, msg = self.mail_from("a@pinned.example",
                                   client_context(self.good_cert, self.good_key))
        self.assertEqual(code, 250, msg)
        code, msg = self.mail_from("a@pinned.example",
                                   client_context(self.spki_cert, self.spki_key))
        self.assertEqual(code, 250, msg)


if __name__ == "__main__":
    unittest.main()
