"""Outbound delivery with per-destination TLS policy, against real peers on
loopback: postern-sink receivers (with and without STARTTLS, self-signed,
CA-signed, wrong name, TLS 1.2 only, pinned), dnsmasq for MX records, and a
private Postfix as the final destination. Each test asserts what the
receiver saw: delivered, deferred with reason tls_required, and never a
message in plaintext where the policy enforces TLS."""
import json
import os
import shutil
import smtplib
import subprocess
import tempfile
import time
import unittest

from node import Node, free_port, wait_for
from postfix_instance import PostfixInstance
from sink_process import Sink
from tls_helpers import fingerprint, make_client_cert

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
MESSAGE = b"From: alice@client.test\r\nSubject: relay test\r\n\r\nhello\r\n"


class CertificateAuthority:
    """A private CA (openssl CLI) and leaves it signs for given names."""

    def __init__(self, directory):
        self.dir = directory
        self.cert = os.path.join(directory, "ca.crt")
        self.key = os.path.join(directory, "ca.key")
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-nodes", "-keyout", self.key, "-out", self.cert, "-subj",
                      "/CN=Postern Test CA", "-days", "2")

    def _openssl(self, *args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    def leaf(self, name, dns_name):
        key = os.path.join(self.dir, f"{name}.key")
        csr = os.path.join(self.dir, f"{name}.csr")
        cert = os.path.join(self.dir, f"{name}.crt")
        ext = os.path.join(self.dir, f"{name}.ext")
        with open(ext, "w") as f:
            f.write(f"subjectAltName=DNS:{dns_name}\n")
        self._openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={dns_name}")
        self._openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                      "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext)
        return cert, key


class DeliveryTestCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="postern-delivery-")
        self.addCleanup(self.tmp.cleanup)

    def sink(self, *args, **kwargs):
        s = Sink("--keep-content", *args, **kwargs)
        self.addCleanup(s.close)
        return s

    def node(self, extra_yaml):
        n = Node(extra_yaml=extra_yaml)
        self.addCleanup(n.close)
        n.start()
        return n

    @staticmethod
    def send(node, recipients, sender="alice@client.test"):
        """Returns the queue id from the 250 reply."""
        with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=20) as s:
            s.ehlo("client.test")
            s.mail(sender)
            for r in recipients:
                code, _ = s.rcpt(r)
                assert code == 250, (r, code)
            code, reply = s.data(MESSAGE)
            assert code == 250, reply
            return reply.decode().rsplit(" ", 1)[1]

    @staticmethod
    def envelope(node, queue_id):
        try:
            return json.loads(node.spool("show", queue_id))
        except subprocess.CalledProcessError:
            return None  # gone: delivered or bounced

    def wait_recipient(self, node, queue_id, index=0, state="RECIPIENT_STATE_DEFERRED"):
        def check():
            e = self.envelope(node, queue_id)
            return e and e["recipients"][index].get("state") == state and e
        return wait_for(check, timeout=20, what=f"{queue_id} recipient {index} {state}")

    def wait_gone(self, node, queue_id):
        wait_for(lambda: self.envelope(node, queue_id) is None, timeout=20,
                 what=f"{queue_id} leaves the queue")


def route(domain, sink):
    return f'  - {{ domain: {domain}, next_hop: "[{sink.ip}]:{sink.port}" }}\n'


class OutboundPolicyTest(DeliveryTestCase):
    def test_opportunistic_starttls_is_used_when_offered(self):
        tls_sink = self.sink(tls="offer")
        plain_sink = self.sink()
        node = self.node("routes:\n" + route("tls.test", tls_sink) + route("plain.test", plain_sink))
        a = self.send(node, ["bob@tls.test"])
        b = self.send(node, ["carol@plain.test"])
        got = tls_sink.wait_records(1)[0]
        self.assertEqual(got["rcpt"], ["bob@tls.test"])
        self.assertEqual(got["tls"]["version"], "TLSv1.3")
        self.assertIn("hello", got["content"])
        self.assertIn("Received: from client.test", got["content"])
        got = plain_sink.wait_records(1)[0]
        self.assertIsNone(got["tls"], "no STARTTLS offered: plaintext is allowed")
        self.wait_gone(node, a)
        self.wait_gone(node, b)
        wait_for(lambda: node.metric("postern_deliveries_total", 'result="delivered"') == 2,
                 what="delivered counted")
        self.assertIn("event=sent", node.logs())

    def test_opportunistic_falls_back_to_plaintext_when_the_handshake_fails(self):
        tls12 = self.sink("--tls-max", "1.2", tls="offer")
        node = self.node(
            "routes:\n" + route("old.test", tls12) +
            "partners:\n  - { domain: old.test, outbound: { tls: opportunistic, min_version: \"1.3\" } }\n")
        qid = self.send(node, ["a@old.test"])
        got = tls12.wait_records(1)[0]
        self.assertIsNone(got["tls"], "delivered in plaintext on a new connection")
        self.wait_gone(node, qid)
        self.assertEqual(node.metric("postern_outbound_plaintext_fallbacks_total"), 1)
        self.assertIn("event=tls_fallback_plaintext", node.logs())

    def test_an_unreachable_host_is_not_tried_again_at_once(self):
        closed = free_port()
        node = self.node(f'routes:\n  - {{ domain: dead.test, next_hop: "[127.0.0.1]:{closed}" }}\n')
        first = self.send(node, ["a@dead.test"])
        r = self.wait_recipient(node, first)["recipients"][0]
        self.assertEqual(r["last_reason"], "DEFER_REASON_CONNECTION")
        self.assertIn("Connection refused", r["last_error"])
        second = self.send(node, ["b@dead.test"])
        r = self.wait_recipient(node, second)["recipients"][0]
        self.assertIn("failed recently", r["last_error"])
        refused = [l for l in node.logs().splitlines()
                   if "event=outbound_failed" in l and "Connection refused" in l]
        self.assertEqual(len(refused), 1, "one connection attempt, then the dead-host cache")

    def test_require_never_sends_plaintext_and_defers_with_tls_required(self):
        no_tls = self.sink()
        node = self.node(
            "routes:\n" + route("partner.test", no_tls) +
            "partners:\n  - { domain: partner.test, outbound: { tls: require } }\n")
        qid = self.send(node, ["dave@partner.test"])
        env = self.wait_recipient(node, qid)
        r = env["recipients"][0]
        self.assertEqual(r["last_reason"], "DEFER_REASON_TLS_REQUIRED")
        self.assertEqual(r["tls_result"], "starttls-not-supported")
        self.assertIn("first_tls_failure_time", r)
        time.sleep(1.2)  # the sink writes its stats once a second
        stats = no_tls.stats()
        self.assertGreaterEqual(stats.get("connections", 0), 1)
        self.assertEqual(stats.get("messages", 0), 0, "nothing was sent in plaintext")
        self.assertEqual(no_tls.records(), [])
        self.assertGreaterEqual(
            node.metric("postern_deferrals_total", 'reason="tls_required"'), 1)

    def test_verify_checks_the_chain_and_the_name(self):
        ca = CertificateAuthority(self.tmp.name)
        good = self.sink(tls="offer", cert=ca.leaf("good", "mx.good.test"))
        wrong_name = self.sink(tls="offer", cert=ca.leaf("wrong", "mx.elsewhere.test"))
        self_signed = self.sink(tls="offer")
        partners = "partners:\n" + "".join(
            f"  - {{ domain: {d}, outbound: {{ tls: verify, ca_file: \"{ca.cert}\", "
            f"match: [mx.{d}] }} }}\n" for d in ("good.test", "wrong.test", "self.test"))
        node = self.node("routes:\n" + route("good.test", good) + route("wrong.test", wrong_name) +
                         route("self.test", self_signed) + partners)
        ok = self.send(node, ["a@good.test"])
        mismatch = self.send(node, ["b@wrong.test"])
        untrusted = self.send(node, ["c@self.test"])
        self.assertEqual(good.wait_records(1)[0]["tls"]["version"], "TLSv1.3")
        self.wait_gone(node, ok)
        self.assertEqual(node.metric("postern_outbound_sessions_total", 'tls="tls_verified"'), 1)
        r = self.wait_recipient(node, mismatch)["recipients"][0]
        self.assertEqual(r["tls_result"], "certificate-host-mismatch")
        r = self.wait_recipient(node, untrusted)["recipients"][0]
        self.assertEqual(r["tls_result"], "certificate-not-trusted")
        time.sleep(1.2)
        self.assertEqual(wrong_name.records(), [])
        self.assertEqual(self_signed.records(), [])

    def test_pin_accepts_either_pin_of_a_set_and_refuses_others(self):
        cert, key, fp = make_client_cert(self.tmp.name, "pinned")
        pinned = self.sink(tls="offer", cert=(cert, key))
        other = self.sink(tls="offer")
        wrong = "sha256:" + "0" * 64
        node = self.node(
            "routes:\n" + route("pinned.test", pinned) + route("other.test", other) +
            "partners:\n"
            f"  - {{ domain: pinned.test, outbound: {{ tls: pin, pins: [\"{wrong}\", \"sha256:{fp}\"] }} }}\n"
            f"  - {{ domain: other.test, outbound: {{ tls: pin, pins: [\"sha256:{fp}\"] }} }}\n")
        ok = self.send(node, ["a@pinned.test"])
        bad = self.send(node, ["b@other.test"])
        self.assertIsNotNone(pinned.wait_records(1)[0]["tls"])
        self.wait_gone(node, ok)
        self.assertEqual(node.metric("postern_outbound_sessions_total", 'tls="tls_pinned"'), 1)
        r = self.wait_recipient(node, bad)["recipients"][0]
        self.assertEqual(r["tls_result"], "pin-mismatch")
        time.sleep(1.2)
        self.assertEqual(other.records(), [])

    def test_minimum_version_is_enforced(self):
        tls12 = self.sink("--tls-max", "1.2", tls="offer")
        node = self.node(
            "routes:\n" + route("old.test", tls12) +
            "partners:\n  - { domain: old.test, outbound: { tls: require, min_version: \"1.3\" } }\n")
        qid = self.send(node, ["a@old.test"])
        r = self.wait_recipient(node, qid)["recipients"][0]
        self.assertEqual(r["tls_result"], "protocol-version-too-low")
        time.sleep(1.2)
        self.assertEqual(tls12.records(), [])

    def test_testing_mode_delivers_and_reports_what_enforcement_would_refuse(self):
        self_signed = self.sink(tls="offer")
        node = self.node(
            "routes:\n" + route("trial.test", self_signed) +
            "partners:\n  - { domain: trial.test, outbound: { tls: verify, testing: true } }\n")
        qid = self.send(node, ["a@trial.test"])
        self.assertIsNotNone(self_signed.wait_records(1)[0]["tls"])
        self.wait_gone(node, qid)
        wait_for(lambda: node.metric("postern_outbound_tls_testing_failures_total",
                                     'tls="certificate-not-trusted"') >= 1,
                 what="testing failure counted")
        self.assertIn("event=tls_policy_testing_would_fail", node.logs())

    def test_none_never_starts_tls_even_when_offered(self):
        tls_sink = self.sink(tls="offer")
        node = self.node(
            "routes:\n" + route("clear.test", tls_sink) +
            "partners:\n  - { domain: clear.test, outbound: { tls: none } }\n")
        qid = self.send(node, ["a@clear.test"])
        self.assertIsNone(tls_sink.wait_records(1)[0]["tls"])
        self.wait_gone(node, qid)

    def test_mixed_recipients_follow_their_own_policies(self):
        no_tls = self.sink()
        node = self.node(
            "routes:\n" + route("strict.test", no_tls) + route("relaxed.test", no_tls) +
            "partners:\n  - { domain: strict.test, outbound: { tls: require } }\n")
        qid = self.send(node, ["a@strict.test", "b@relaxed.test"])
        got = no_tls.wait_records(1)[0]
        self.assertEqual(got["rcpt"], ["b@relaxed.test"])
        env = self.wait_recipient(node, qid, index=0)
        self.assertEqual(env["recipients"][1]["state"], "RECIPIENT_STATE_DELIVERED")
        time.sleep(1.2)
        self.assertEqual(len(no_tls.records()), 1, "strict.test never got it in plaintext")


class BounceTest(DeliveryTestCase):
    def test_enforced_tls_failure_bounces_to_the_sender_after_the_window(self):
        no_tls = self.sink()
        sender_mx = self.sink()
        node = self.node(
            "delivery: { tls_failure_max_defer: 3s, retry_schedule: [1s] }\n"
            "routes:\n" + route("partner.test", no_tls) + route("client.test", sender_mx) +
            "partners:\n  - { domain: partner.test, outbound: { tls: require } }\n")
        started = time.monotonic()
        qid = self.send(node, ["dave@partner.test"])
        dsn = wait_for(lambda: sender_mx.records(), timeout=30, what="DSN at the sender")[0]
        self.assertGreaterEqual(time.monotonic() - started, 3.0)
        self.assertEqual(dsn["mail_from"], "")
        self.assertEqual(dsn["rcpt"], ["alice@client.test"])
        body = dsn["content"]
        self.assertIn("multipart/report", body)
        self.assertIn("report-type=delivery-status", body)
        self.assertIn("Final-Recipient: rfc822; dave@partner.test", body)
        self.assertIn("Action: failed", body)
        self.assertIn("Status: 5.7.10", body)
        self.assertIn("starttls-not-supported", body)
        self.assertIsNone(self.envelope(node, qid))
        time.sleep(1.2)
        self.assertEqual(no_tls.records(), [], "never sent in plaintext")
        self.assertEqual(node.metric("postern_dsns_sent_total"), 1)
        self.assertEqual(node.metric("postern_expiries_total", 'reason="tls_required"'), 1)


class Dnsmasq:
    def __init__(self, directory, records):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [DNSMASQ, "--no-daemon", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
             f"--port={self.port}", "--listen-address=127.0.0.1", "--bind-interfaces",
             f"--pid-file={directory}/dnsmasq.pid", *records],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(self._answers, what="dnsmasq up")

    def _answers(self):
        if self.proc.poll() is not None:
            raise RuntimeError(self.proc.stderr.read().decode())
        r = subprocess.run(["bash", "-c", f"exec 3<>/dev/udp/127.0.0.1/{self.port}"],
                           capture_output=True)
        return r.returncode == 0 and self._listening()

    def _listening(self):
        out = subprocess.run(["ss", "-lun"], capture_output=True, text=True).stdout
        return f"127.0.0.1:{self.port}" in out

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stderr.close()


class MxTest(DeliveryTestCase):
    def test_mx_order_and_fallback_to_the_next_mx_for_tls(self):
        port = free_port()
        first = self.sink(ip="127.0.0.2", port=port)               # preferred, no STARTTLS
        second = self.sink(tls="offer", ip="127.0.0.3", port=port)  # backup with TLS
        dns = Dnsmasq(self.tmp.name, [
            "--mx-host=mx.test,mx1.mx.test,10", "--mx-host=mx.test,mx2.mx.test,20",
            "--host-record=mx1.mx.test,127.0.0.2", "--host-record=mx2.mx.test,127.0.0.3",
            "--mx-host=open.test,mx1.mx.test,10",
        ])
        self.addCleanup(dns.close)
        node = self.node(
            f"dns: {{ servers: [\"127.0.0.1:{dns.port}\"] }}\n"
            f"delivery: {{ smtp_port: {port} }}\n"
            "partners:\n  - { domain: mx.test, outbound: { tls: require } }\n")
        enforced = self.send(node, ["a@mx.test"])
        ordinary = self.send(node, ["b@open.test"])
        got = second.wait_records(1)[0]
        self.assertEqual(got["rcpt"], ["a@mx.test"])
        self.assertIsNotNone(got["tls"])
        self.assertEqual(got["tls"]["sni"], "mx2.mx.test")
        self.assertEqual(first.wait_records(1)[0]["rcpt"], ["b@open.test"])
        self.wait_gone(node, enforced)
        self.wait_gone(node, ordinary)
        time.sleep(1.2)
        self.assertEqual(len(first.records()), 1, "the TLS-less MX never got mx.test mail")


class PostfixDestinationTest(DeliveryTestCase):
    def test_postfix_as_final_destination_receives_over_starttls(self):
        final = self.sink()
        cert, key, _ = make_client_cert(self.tmp.name, "postfix")
        os.chmod(self.tmp.name, 0o755)
        for f in (cert, key):
            os.chmod(f, 0o644)
        with PostfixInstance(final.port, extra_main_cf={
                "smtpd_tls_security_level": "may", "smtpd_tls_cert_file": cert,
                "smtpd_tls_key_file": key, "smtpd_tls_loglevel": "1"}) as pf:
            node = self.node(
                "routes:\n"
                f'  - {{ domain: postfix.test, next_hop: "[127.0.0.1]:{pf.port}" }}\n')
            qid = self.send(node, ["x@postfix.test"])
            self.wait_gone(node, qid)
            got = final.wait_records(1)[0]
            self.assertEqual(got["rcpt"], ["x@postfix.test"])
            wait_for(lambda: "TLS connection established from" in pf.log(),
                     what="postfix logged the inbound TLS session")


if __name__ == "__main__":
    unittest.main()
