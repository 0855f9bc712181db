"""BoringSSL and OpenSSL 3 (via gRPC) never share a process: the worker links
BoringSSL-side libraries only, posternd gRPC/OpenSSL only. Read from the built
binaries with ldd (transitive) and readelf (direct)."""
import subprocess
import unittest

from node import binary

OPENSSL3 = ("libssl.so.3", "libcrypto.so.3")
BORINGSSL = ("android/libssl.so", "android/libcrypto.so")


def ldd(path):
    return subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout


def needed(path):
    out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
    return [l.split("[", 1)[1].rstrip("]") for l in out.splitlines() if "(NEEDED)" in l]


class LinkSeparationTest(unittest.TestCase):
    def test_worker_links_uring_rocksdb_boringssl_never_grpc_or_openssl3(self):
        libs = ldd(binary("postern-worker"))
        for name in OPENSSL3 + ("libgrpc",):
            self.assertNotIn(name, libs)
        for name in BORINGSSL:
            self.assertIn(name, libs)
        direct = " ".join(needed(binary("postern-worker")))
        self.assertIn("liburing", direct)
        self.assertIn("librocksdb", direct)
        # The allocator: before libc, so RocksDB and BoringSSL use it too.
        self.assertIn("libjemalloc", direct)
        self.assertLess(direct.index("libjemalloc"), direct.index("libc.so"))

    def test_bench_sink_is_on_the_boringssl_side(self):
        libs = ldd(binary("postern-sink"))
        for name in OPENSSL3 + ("libgrpc",):
            self.assertNotIn(name, libs)
        for name in BORINGSSL:
            self.assertIn(name, libs)

    def test_posternctl_and_passwd_stay_on_their_side(self):
        for name in BORINGSSL:
            self.assertNotIn(name, ldd(binary("posternctl")))
        for name in OPENSSL3 + ("libgrpc",):
            self.assertNotIn(name, ldd(binary("postern-passwd")))

    def test_posternd_links_grpc_never_boringssl(self):
        libs = ldd(binary("posternd"))
        for name in BORINGSSL:
            self.assertNotIn(name, libs)
        self.assertNotIn("liburing", libs)
        self.assertIn("libgrpc++", " ".join(needed(binary("posternd"))))

    def test_spool_tool_links_no_tls_at_all(self):
        libs = ldd(binary("postern-spool"))
        for name in OPENSSL3 + BORINGSSL:
            self.assertNotIn(name, libs)


if __name__ == "__main__":
    unittest.main()
