"""A node restarted with fewer workers: spool directories left without a
worker are merged into the remaining shards (k mod N), so no queued message
is stranded, and the merged mail is delivered normally."""
import smtplib
import unittest

from node import Node, wait_for
from sink_process import Sink


class ShardAdoptionTest(unittest.TestCase):
    def test_orphaned_shard_is_adopted_and_its_mail_delivered(self):
        sink = Sink("--keep-content")
        self.addCleanup(sink.close)
        route = f'routes:\n  - {{ domain: sink.test, next_hop: "[127.0.0.1]:{sink.port}" }}\n'
        node = Node(workers=2, extra_yaml="delivery: { hold: true }\n" + route)
        self.addCleanup(node.close)
        node.start()
        for i in range(20):  # one connection each: SO_REUSEPORT spreads them
            with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=10) as s:
                s.sendmail("a@client.test", [f"r{i}@sink.test"], b"Subject: x\r\n\r\nx\r\n")
        counts = [int(node.spool("count", shard=k)) for k in (0, 1)]
        self.assertEqual(sum(counts), 20)
        self.assertTrue(all(counts), f"both shards got mail: {counts}")
        self.assertEqual(node.stop(), 0)

        # One worker, delivery on: shard 1's spool is merged into shard 0.
        with open(node.config_path) as f:
            config = f.read()
        config = config.replace("workers: 2", "workers: 1").replace(
            "delivery: { hold: true }\n", "")
        with open(node.config_path, "w") as f:
            f.write(config)
        node.start()
        wait_for(lambda: len(sink.records()) == 20, timeout=30, what="all 20 delivered")
        self.assertIn("event=shard_adopted", node.logs())
        self.assertEqual(sorted(r["rcpt"][0] for r in sink.records()),
                         sorted(f"r{i}@sink.test" for i in range(20)))
        wait_for(lambda: node.spool("count", shard=1).strip() == b"0", what="shard 1 empty")


if __name__ == "__main__":
    unittest.main()
