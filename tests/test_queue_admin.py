"""Queue administration end to end: smtplib puts mail in a real node's queue
(delivery held, so it stays there), posternctl lists, shows, holds,
releases, deletes and bounces it over the admin socket, and postern-spool
confirms what is on disk. Two workers, so listings merge two shards."""
import os
import re
import smtplib
import unittest

from node import CtlMixin, Node

MESSAGE = b"From: alice@client.test\r\nSubject: queue admin\r\n\r\nhello\r\n"
QUEUE_ID = re.compile(r"^[0-9A-F]{16}$")


class QueueAdminTest(CtlMixin, unittest.TestCase):
    workers = 2

    def setUp(self):
        self.node = Node(workers=self.workers, extra_yaml="delivery: { hold: true }\n").start()
        self.addCleanup(self.node.close)
        self.socket = "unix:" + os.path.join(self.node.data_dir, "admin.sock")

    # --- helpers ---

    def listing(self, *args):
        """queue list --json: {queue id: summary}."""
        reply = self.ctl_json("queue", "list", *args)
        return {m["queueId"]: m for m in reply.get("messages", [])}

    def send(self, sender, recipients):
        with smtplib.SMTP("127.0.0.1", self.node.smtp_port, timeout=20) as s:
            s.ehlo("client.test")
            s.mail(sender)
            for r in recipients:
                code, _ = s.rcpt(r)
                self.assertEqual(code, 250, r)
            code, reply = s.data(MESSAGE)
            self.assertEqual(code, 250, reply)
            return reply.decode().rsplit(" ", 1)[1]

    def spool_count(self):
        return sum(int(self.node.spool("count", shard=s).decode().strip() or 0)
                   for s in range(self.workers))

    def send_three(self):
        return [
            self.send("alice@client.test", ["bob@example.org"]),
            self.send("carol@client.test", ["dave@example.net", "erin@sub.example.net"]),
            self.send("alice@client.test", ["frank@example.com"]),
        ]

    # --- tests ---

    def test_list_shows_every_message_with_sender_and_recipients(self):
        ids = self.send_three()
        listed = self.listing()
        self.assertEqual(set(listed), set(ids))
        self.assertEqual(list(listed), sorted(ids), "listed in queue id order")
        self.assertEqual(listed[ids[0]]["sender"], "alice@client.test")
        self.assertEqual(listed[ids[0]]["recipients"], ["bob@example.org"])
        self.assertEqual(listed[ids[1]]["sender"], "carol@client.test")
        self.assertEqual(listed[ids[1]]["recipients"], ["dave@example.net", "erin@sub.example.net"])
        for m in listed.values():
            self.assertEqual(m["state"], "MESSAGE_STATE_ACTIVE")
            self.assertGreater(int(m["size"]), len(MESSAGE))

        self.assertEqual(set(self.listing("--sender", "ALICE")), {ids[0], ids[2]})
        self.assertEqual(set(self.listing("--domain", "example.net")), {ids[1]})
        self.assertEqual(set(self.listing("--domain", ".example.net")), {ids[1]})
        self.assertEqual(set(self.listing("--domain", "example.com")), {ids[2]})
        self.assertEqual(set(self.listing("--state", "held")), set())
        self.assertEqual(set(self.listing("--min-age", "1h")), set())

        page = self.ctl_json("queue", "list", "--limit", "2")
        self.assertEqual([m["queueId"] for m in page["messages"]], sorted(ids)[:2])
        self.assertEqual(page["nextAfterQueueId"], sorted(ids)[1])

        table, _ = self.ctl("queue", "list")
        for queue_id in ids:
            self.assertIn(queue_id, table)
        self.assertIn("erin@sub.example.net", table)
        self.assertIn("in 3 Requests", table)

    def test_show_returns_the_envelope(self):
        ids = self.send_three()
        reply = self.ctl_json("queue", "show", ids[1])
        env = reply["envelope"]
        self.assertEqual(env["queueId"], ids[1])
        self.assertEqual(env["sender"], "carol@client.test")
        self.assertEqual([r["address"] for r in env["recipients"]],
                         ["dave@example.net", "erin@sub.example.net"])
        self.assertEqual({r["state"] for r in env["recipients"]}, {"RECIPIENT_STATE_PENDING"})
        self.assertEqual(env["helo"], "client.test")
        self.assertEqual(reply["state"], "MESSAGE_STATE_ACTIVE")
        text, _ = self.ctl("queue", "show", ids[1])
        self.assertIn("carol@client.test", text)

        missing = "00000000000001" + ids[1][-2:]  # a well-formed id on the same shard
        _, err = self.ctl("queue", "show", missing, expect_rc=1)
        self.assertIn("not found", err)
        _, err = self.ctl("queue", "show", "nonsense", expect_rc=1)
        self.assertIn("not a queue id", err)

    def test_hold_and_release(self):
        ids = self.send_three()
        reply = self.ctl_json("queue", "hold", ids[0])
        self.assertEqual(reply["results"], [{"queueId": ids[0], "ok": True, "error": ""}])
        self.assertEqual(set(self.listing("--state", "held")), {ids[0]})
        self.assertEqual(self.listing()[ids[0]]["state"], "MESSAGE_STATE_HELD")
        self.assertEqual(self.ctl_json("queue", "show", ids[0])["state"], "MESSAGE_STATE_HELD")

        # A retry does not lift the hold.
        reply = self.ctl_json("queue", "retry", ids[0], expect_rc=1)
        self.assertFalse(reply["results"][0]["ok"])
        self.assertIn("release it first", reply["results"][0]["error"])

        out, _ = self.ctl("queue", "release", ids[0])
        self.assertIn(f"{ids[0]}: ok", out)
        self.assertEqual(set(self.listing("--state", "held")), set())
        self.assertEqual(self.listing()[ids[0]]["state"], "MESSAGE_STATE_ACTIVE")
        self.assertEqual(self.spool_count(), 3)

    def test_delete_removes_the_message_from_the_spool(self):
        ids = self.send_three()
        self.assertEqual(self.spool_count(), 3)
        reply = self.ctl_json("queue", "delete", ids[1], "0000000000000000", expect_rc=1)
        self.assertEqual(reply["results"][0], {"queueId": ids[1], "ok": True, "error": ""})
        self.assertFalse(reply["results"][1]["ok"])
        self.assertEqual(reply["results"][1]["error"], "not found")
        self.assertEqual(set(self.listing()), {ids[0], ids[2]})
        self.assertEqual(self.spool_count(), 2)

    def test_bounce_removes_the_message_and_queues_a_dsn_to_the_sender(self):
        ids = self.send_three()
        out, _ = self.ctl("queue", "bounce", ids[1])
        self.assertIn(f"{ids[1]}: ok", out)
        listed = self.listing()
        self.assertNotIn(ids[1], listed)
        dsns = [m for m in listed.values() if m["sender"] == ""]
        self.assertEqual(len(dsns), 1, listed)
        self.assertEqual(dsns[0]["recipients"], ["carol@client.test"])
        self.assertRegex(dsns[0]["queueId"], QUEUE_ID)
        self.assertEqual(set(listed) - {dsns[0]["queueId"]}, {ids[0], ids[2]})
        self.assertEqual(self.spool_count(), 3)
        env = self.ctl_json("queue", "show", dsns[0]["queueId"])["envelope"]
        self.assertTrue(env["isDsn"])


if __name__ == "__main__":
    unittest.main()
