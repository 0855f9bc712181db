"""Interop with a real Postfix as the sending MTA: a private Postfix instance
(tests/postfix_instance.py) relays into Postern in plaintext, over
opportunistic STARTTLS, and refuses to deliver when it requires TLS that
Postern does not offer."""
import json
import os
import re
import unittest

from node import Node, wait_for
from postfix_instance import POSTFIX, PostfixInstance

HAVE_POSTFIX = os.access(POSTFIX, os.X_OK)


def spooled(node):
    lines = node.spool("list", "--json").decode().splitlines()
    return {m["queue_id"]: m for m in (json.loads(l) for l in lines if l.strip())}


def received_header(node, queue_id):
    """The first (Postern's own) Received header of a spooled message."""
    head = node.spool("body", queue_id).split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    return head.split("\r\nReceived:", 1)[0]


def message(subject):
    return (f"From: <alice@example.com>\r\nTo: <bob@example.org>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@postfix-interop.test>\r\n\r\nrelayed by postfix\r\n")


@unittest.skipUnless(HAVE_POSTFIX, "postfix is not installed (tools/setup.sh)")
@unittest.skipUnless(os.geteuid() == 0, "a private Postfix master must run as root")
class PostfixInteropTest(unittest.TestCase):
    def start(self, listener_attrs, tls_level):
        self.node = Node(workers=1, listeners={"mx": listener_attrs}, hold_delivery=True).start()
        self.addCleanup(self.node.close)
        self.postfix = PostfixInstance(self.node.ports["mx"], tls_level=tls_level)
        self.addCleanup(self.postfix.close)
        return self.node, self.postfix

    def relay_one(self, subject):
        """Sends one message through Postfix, waits until Postfix says it was
        sent, and returns (status=sent line, Postern queue id)."""
        self.postfix.send("alice@example.com", "bob@example.org", message(subject))
        [line] = self.postfix.wait_delivered(1, timeout=20)
        m = re.search(r"status=sent \(250 2\.0\.0 Ok: queued as ([0-9A-F]+)\)", line)
        self.assertIsNotNone(m, line)
        return line, m.group(1)

    def test_plaintext_relay_into_postern(self):
        node, pf = self.start("tls: none, auth: none", "none")
        line, queue_id = self.relay_one("plain")
        self.assertIn("relay=127.0.0.1[127.0.0.1]:%d" % node.ports["mx"], line)
        queued = re.compile(rf"event=queued .*queue_id={queue_id} .*from=alice@example\.com nrcpt=1")
        wait_for(lambda: queued.search(node.logs()), timeout=10, what="event=queued in the node log")
        msgs = spooled(node)
        self.assertIn(queue_id, msgs)
        self.assertEqual(msgs[queue_id]["sender"], "alice@example.com")
        self.assertEqual(msgs[queue_id]["recipients"], ["bob@example.org"])
        body = node.spool("body", queue_id)
        self.assertIn(b"Message-ID: <plain@postfix-interop.test>", body)
        self.assertIn(b"relayed by postfix", body)
        header = received_header(node, queue_id)
        self.assertIn("with ESMTP id", header)
        self.assertNotIn("ESMTPS", header)
        self.assertEqual(pf.log_lines(r"TLS connection established"), [])
        pf.wait_queue_empty(timeout=10)

    def test_encrypt_relay_uses_starttls(self):
        node, pf = self.start("tls: offer, auth: none", "encrypt")
        line, queue_id = self.relay_one("tls")
        established = pf.log_lines(r"(Anonymous|Untrusted) TLS connection established to "
                                   r"127\.0\.0\.1\[127\.0\.0\.1\]")
        self.assertTrue(established, pf.log())
        self.assertRegex(established[0], r"TLSv1\.[23] with cipher")
        msgs = spooled(node)
        self.assertEqual(msgs[queue_id]["sender"], "alice@example.com")
        self.assertEqual(msgs[queue_id]["recipients"], ["bob@example.org"])
        self.assertIn("with ESMTPS", received_header(node, queue_id))

    def test_encrypt_refuses_listener_without_tls(self):
        node, pf = self.start("tls: none, auth: none", "encrypt")
        pf_id = pf.send("alice@example.com", "bob@example.org", message("notls"))
        deferred = pf.wait_log(r"status=deferred .*TLS is required, but was not offered", timeout=20)
        self.assertIn(pf_id, deferred[0])
        self.assertEqual(pf.sent_lines(), [])
        queue = pf.queue_json()
        self.assertEqual([m["queue_id"] for m in queue], [pf_id])
        self.assertEqual(queue[0]["queue_name"], "deferred")
        self.assertEqual(spooled(node), {})
        self.assertEqual(node.metric("postern_messages_accepted_total"), 0)


if __name__ == "__main__":
    unittest.main()
