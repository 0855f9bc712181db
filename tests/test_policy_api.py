"""Policy through the admin API, end to end (issue 12, partners only):
posternctl applies a partner to a real node's policy store, the workers get
the new configuration and a new SMTP session is held to it at once; invalid,
stale and file-owned changes are refused with nothing committed; history,
rollback and a restart behave."""
import json
import os
import socket
import time
import unittest

from node import CtlMixin, Node, read_reply

REQUIRE_TLS = "partners:\n  - { domain: partner.example, inbound: { require_tls: true } }\n"
BAD_PIN = ("partners:\n"
           "  - domain: partner.example\n"
           "    outbound: { tls: pin, pins: [\"sha256:not-a-digest\"] }\n")
FILE_PARTNER = "partners:\n  - { domain: bank.example, inbound: { require_tls: true } }\n"


class PolicyApiTest(CtlMixin, unittest.TestCase):
    def setUp(self):
        self.node = Node(workers=2, extra_yaml=FILE_PARTNER).start()
        self.addCleanup(self.node.close)
        self.socket = "unix:" + os.path.join(self.node.data_dir, "admin.sock")

    # --- helpers ---

    def write(self, name, text):
        path = os.path.join(self.node.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def apply(self, text, *args, expect_rc=0):
        return self.ctl("apply", "-f", self.write("policy.yaml", text), *args,
                        expect_rc=expect_rc)

    def revision(self):
        return int(self.ctl_json("policy", "show").get("revision", 0))

    def mail_from(self, sender):
        """The reply to MAIL FROM in a new plaintext session."""
        with socket.create_connection(("127.0.0.1", self.node.smtp_port), timeout=10) as s:
            read_reply(s)
            s.sendall(b"EHLO client.test\r\n")
            read_reply(s)
            s.sendall(f"MAIL FROM:<{sender}>\r\n".encode())
            reply = read_reply(s).decode()
            s.sendall(b"QUIT\r\n")
            return reply

    def wait_mail_reply(self, sender, prefix, timeout=5.0):
        """Polls new sessions until MAIL FROM is answered with `prefix` (the
        workers apply a new configuration asynchronously)."""
        deadline = time.monotonic() + timeout
        while True:
            reply = self.mail_from(sender)
            if reply.startswith(prefix) or time.monotonic() > deadline:
                self.assertTrue(reply.startswith(prefix), f"MAIL FROM:<{sender}>: {reply!r}")
                return
            time.sleep(0.1)

    # --- tests ---

    def test_apply_enforces_tls_then_rollback_lifts_it(self):
        self.assertTrue(self.mail_from("x@partner.example").startswith("250"))
        before = self.revision()

        out, _ = self.apply(REQUIRE_TLS, "--dry-run")
        self.assertIn("would add partner partner.example", out)
        self.assertEqual(self.revision(), before, "a dry run commits nothing")

        reply = json.loads(self.apply(REQUIRE_TLS, "--json")[0])
        self.assertTrue(reply["committed"])
        self.assertEqual(int(reply["revision"]), before + 1)
        self.assertEqual([c["domain"] for c in reply["changes"]], ["partner.example"])
        self.assertEqual({w["state"] for w in reply["rollout"]["workers"]},
                         {"ROLLOUT_STATE_APPLIED"})

        self.wait_mail_reply("x@partner.example", "530 5.7.0")
        self.assertTrue(self.mail_from("x@other.example").startswith("250"))

        history = self.ctl_json("policy", "history")["records"]
        self.assertEqual(int(history[0]["revision"]), before + 1)
        self.assertEqual(history[0]["actor"], "local")
        self.assertIn("partner.example", history[0]["summary"])
        out, _ = self.ctl("policy", "history")
        self.assertIn("added partner partner.example", out)

        shown = {p["partner"]["domain"]: p for p in self.ctl_json("policy", "show")["partners"]}
        self.assertEqual(shown["partner.example"]["source"], "POLICY_SOURCE_STORE")
        self.assertEqual(shown["bank.example"]["source"], "POLICY_SOURCE_FILE")
        out, _ = self.ctl("partner", "list")
        self.assertRegex(out, r"partner\.example\s+store")
        self.assertRegex(out, r"bank\.example\s+file")

        out, _ = self.ctl("policy", "rollback", str(before))
        self.assertIn("removed partner partner.example", out)
        self.assertEqual(self.revision(), before + 2)
        self.wait_mail_reply("x@partner.example", "250")
        self.assertEqual(self.ctl_json("policy", "history")["records"][0]["summary"],
                         f"rollback to revision {before}")

    def test_invalid_pin_is_refused_with_the_field_path(self):
        before = self.revision()
        _, err = self.apply(BAD_PIN, expect_rc=1)
        self.assertIn("INVALID_ARGUMENT", err)
        self.assertIn("partners[0].outbound.pins[0]", err)
        self.assertEqual(self.revision(), before)

    def test_other_sections_are_refused(self):
        _, err = self.apply("node: { name: other }\n", expect_rc=1)
        self.assertIn("INVALID_ARGUMENT", err)
        self.assertIn("supported sections: partners", err)

    def test_stale_expect_revision_is_aborted(self):
        self.apply(REQUIRE_TLS)
        rev = self.revision()
        other = "partners:\n  - { domain: other.example, inbound: { require_tls: true } }\n"
        _, err = self.apply(other, "--expect-revision", str(rev - 1 if rev > 1 else rev + 1),
                            expect_rc=1)
        self.assertIn("ABORTED", err)
        self.assertEqual(self.revision(), rev)
        self.assertNotIn("other.example",
                         [p["partner"]["domain"]
                          for p in self.ctl_json("policy", "show")["partners"]])
        self.apply(other, "--expect-revision", str(rev))
        self.assertEqual(self.revision(), rev + 1)

    def test_file_partner_is_the_files(self):
        before = self.revision()
        _, err = self.apply("partners:\n  - { domain: Bank.Example }\n", expect_rc=1)
        self.assertIn("FAILED_PRECONDITION", err)
        self.assertIn(self.node.config_path, err)
        _, err = self.ctl("partner", "delete", "bank.example", expect_rc=1)
        self.assertIn("FAILED_PRECONDITION", err)
        _, err = self.ctl("partner", "delete", "nobody.example", expect_rc=1)
        self.assertIn("NOT_FOUND", err)
        self.assertEqual(self.revision(), before)

    def test_delete_partner(self):
        self.apply(REQUIRE_TLS)
        self.wait_mail_reply("x@partner.example", "530 5.7.0")
        out, _ = self.ctl("partner", "delete", "partner.example")
        self.assertIn("removed partner partner.example", out)
        self.wait_mail_reply("x@partner.example", "250")

    def test_store_partner_survives_a_restart(self):
        self.apply(REQUIRE_TLS)
        rev = self.revision()
        self.assertEqual(self.node.stop(), 0)
        self.node.start()
        self.assertEqual(self.revision(), rev)
        # Enforced from the first session: no polling after a start.
        self.assertTrue(self.mail_from("x@partner.example").startswith("530 5.7.0"))
        self.assertTrue(self.mail_from("x@other.example").startswith("250"))

    def test_sighup_reload_keeps_store_partners(self):
        self.apply(REQUIRE_TLS)
        self.wait_mail_reply("x@partner.example", "530 5.7.0")
        version = int(self.ctl_json("status")["configVersion"])
        self.node.proc.send_signal(1)  # SIGHUP
        for _ in range(100):
            if int(self.ctl_json("status")["configVersion"]) > version:
                break
            time.sleep(0.05)
        self.assertGreater(int(self.ctl_json("status")["configVersion"]), version)
        self.assertTrue(self.mail_from("x@partner.example").startswith("530 5.7.0"))


if __name__ == "__main__":
    unittest.main()
