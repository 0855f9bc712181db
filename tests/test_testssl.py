"""testssl.sh against the listeners: each shows exactly what tls: promises.
Bounded: protocols and cipher categories only (~20 s per scan)."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from node import Node


def scan(port, starttls, checks):
    with tempfile.TemporaryDirectory(prefix="postern-testssl-") as tmp:
        out = os.path.join(tmp, "scan.json")
        args = ["testssl", "--quiet", "--color", "0", "--warnings", "off", *checks,
                "--jsonfile", out]
        if starttls:
            args += ["--starttls", "smtp"]
        subprocess.run(args + [f"127.0.0.1:{port}"], capture_output=True, timeout=240)
        return {f["id"]: f["finding"] for f in json.load(open(out))}


@unittest.skipIf(shutil.which("testssl") is None, "testssl.sh not installed")
class TestSslTest(unittest.TestCase):
    def start(self, tls_yaml):
        node = Node(workers=1, listeners={"mta": "tls: offer", "smtps": "tls: implicit",
                                          "submission": "tls: require, auth: after_tls"},
                    extra_yaml=tls_yaml).start()
        self.addCleanup(node.close)
        return node

    def test_default_policy_tls12_and_13_forward_secret_only(self):
        node = self.start("")
        found = scan(node.ports["mta"], True, ["-p", "-s"])
        for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
            self.assertEqual(found[old], "not offered", old)
        self.assertTrue(found["TLS1_2"].startswith("offered"))
        self.assertTrue(found["TLS1_3"].startswith("offered"))
        for weak in ("cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW",
                     "cipherlist_3DES_IDEA"):
            self.assertEqual(found[weak], "not offered", weak)
        self.assertTrue(found["cipherlist_STRONG"].startswith("offered"))
        # The submission listener (tls: require) negotiates the same way.
        sub = scan(node.ports["submission"], True, ["-p"])
        for version in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3"):
            self.assertEqual(sub[version], found[version], version)
        # The pfs class allows ECDHE with CBC ("average") for older senders.
        self.assertTrue(found["cipherlist_AVERAGE"].startswith("offered"))

    def test_strong_policy_and_tls13_minimum(self):
        node = self.start('tls: { min_version: "1.2", ciphers: strong }\n')
        found = scan(node.ports["smtps"], False, ["-s"])
        self.assertEqual(found["cipherlist_AVERAGE"], "not offered")
        self.assertTrue(found["cipherlist_STRONG"].startswith("offered"))
        node13 = self.start('tls: { min_version: "1.3" }\n')
        found = scan(node13.ports["smtps"], False, ["-p"])
        self.assertEqual(found["TLS1_2"], "not offered")
        self.assertTrue(found["TLS1_3"].startswith("offered"))


if __name__ == "__main__":
    unittest.main()
