#include "control/default_certificate.h"

#include <dirent.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace postern::control {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

std::string NewTempDir() {
  const char* base = getenv("TEST_TMPDIR");
  std::string tmpl = absl::StrCat(base != nullptr ? base : "/tmp", "/defcert.XXXXXX");
  char* dir = mkdtemp(tmpl.data());
  EXPECT_NE(dir, nullptr);
  return tmpl;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

mode_t Mode(const std::string& path) {
  struct stat st;
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

X509Ptr LoadCert(const std::string& path) {
  FILE* f = fopen(path.c_str(), "r");
  if (f == nullptr) return nullptr;
  X509Ptr cert(PEM_read_X509(f, nullptr, nullptr, nullptr));
  fclose(f);
  return cert;
}

PkeyPtr LoadKey(const std::string& path) {
  FILE* f = fopen(path.c_str(), "r");
  if (f == nullptr) return nullptr;
  PkeyPtr key(PEM_read_PrivateKey(f, nullptr, nullptr, nullptr));
  fclose(f);
  return key;
}

std::vector<std::string> SanDnsNames(X509* cert) {
  std::vector<std::string> out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    if (gn->type != GEN_DNS) continue;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.dNSName)),
                     ASN1_STRING_length(gn->d.dNSName));
  }
  GENERAL_NAMES_free(names);
  return out;
}

std::string CommonName(X509* cert, bool issuer) {
  X509_NAME* name = issuer ? X509_get_issuer_name(cert) : X509_get_subject_name(cert);
  char buf[256] = {0};
  X509_NAME_get_text_by_NID(name, NID_commonName, buf, sizeof(buf));
  return buf;
}

// Days from now to `t` (negative: in the past), whole days rounded down.
int DaysFromNow(const ASN1_TIME* t, int* seconds) {
  int days = 0;
  ASN1_TIME_diff(&days, seconds, nullptr, t);
  return days;
}

// Everything the header promises about one generated certificate.
void ExpectWellFormed(const std::string& cert_path, const std::string& key_path,
                      const std::string& hostname, bool ecdsa) {
  SCOPED_TRACE(cert_path);
  X509Ptr cert = LoadCert(cert_path);
  ASSERT_NE(cert, nullptr);
  PkeyPtr key = LoadKey(key_path);
  ASSERT_NE(key, nullptr);
  EXPECT_EQ(X509_check_private_key(cert.get(), key.get()), 1);
  EXPECT_EQ(X509_verify(cert.get(), key.get()), 1);  // self-signed with this key

  if (ecdsa) {
    EXPECT_EQ(EVP_PKEY_get_base_id(key.get()), EVP_PKEY_EC);
    char group[64] = {0};
    size_t len = 0;
    ASSERT_TRUE(EVP_PKEY_get_group_name(key.get(), group, sizeof(group), &len));
    EXPECT_STREQ(group, "prime256v1");
    EXPECT_EQ(X509_get_signature_nid(cert.get()), NID_ecdsa_with_SHA256);
  } else {
    EXPECT_EQ(EVP_PKEY_get_base_id(key.get()), EVP_PKEY_RSA);
    EXPECT_EQ(EVP_PKEY_get_bits(key.get()), 2048);
    EXPECT_EQ(X509_get_signature_nid(cert.get()), NID_sha256WithRSAEncryption);
  }

  EXPECT_EQ(X509_get_version(cert.get()), X509_VERSION_3);
  EXPECT_EQ(CommonName(cert.get(), false), hostname);
  EXPECT_EQ(CommonName(cert.get(), true), hostname);
  EXPECT_THAT(SanDnsNames(cert.get()), ElementsAre(hostname));
  EXPECT_EQ(X509_check_host(cert.get(), hostname.c_str(), hostname.size(), 0, nullptr), 1);

  BIGNUM* serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert.get()), nullptr);
  ASSERT_NE(serial, nullptr);
  EXPECT_FALSE(BN_is_negative(serial));
  EXPECT_GE(BN_num_bits(serial), 120);
  EXPECT_LE(BN_num_bits(serial), 128);
  BN_free(serial);

  int secs = 0;
  int before_days = DaysFromNow(X509_get0_notBefore(cert.get()), &secs);
  EXPECT_EQ(before_days, 0);
  EXPECT_LE(secs, -3590);  // an hour ago, give or take the test's runtime
  EXPECT_GE(secs, -3600 - 600);
  int after_days = DaysFromNow(X509_get0_notAfter(cert.get()), &secs);
  const int64_t after = int64_t{after_days} * 86400 + secs;
  EXPECT_LE(after, int64_t{825} * 86400);
  EXPECT_GE(after, int64_t{825} * 86400 - 600);  // minus the test's runtime

  uint32_t flags = X509_get_extension_flags(cert.get());
  EXPECT_FALSE(flags & EXFLAG_CA);
  EXPECT_TRUE(flags & EXFLAG_BCONS);  // basicConstraints present, CA:FALSE
  uint32_t ku = X509_get_key_usage(cert.get());
  EXPECT_TRUE(ku & KU_DIGITAL_SIGNATURE);
  EXPECT_FALSE(ku & KU_KEY_CERT_SIGN);
  EXPECT_EQ(static_cast<bool>(ku & KU_KEY_ENCIPHERMENT), !ecdsa);
  uint32_t xku = X509_get_extended_key_usage(cert.get());
  EXPECT_TRUE(xku & XKU_SSL_SERVER);
  EXPECT_TRUE(xku & XKU_SSL_CLIENT);

  EXPECT_EQ(Mode(key_path), 0600u);
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

TEST(DefaultCertificateTest, GeneratesBothPairs) {
  std::string data_dir = NewTempDir();
  auto paths = EnsureDefaultCertificate(data_dir, "mx.example.com");
  ASSERT_TRUE(paths.ok()) << paths.status();
  const std::string certs = data_dir + "/certs";
  EXPECT_THAT(paths->pairs,
              ElementsAre(Pair(certs + "/default-ecdsa.crt", certs + "/default-ecdsa.key"),
                          Pair(certs + "/default-rsa.crt", certs + "/default-rsa.key")));
  EXPECT_EQ(Mode(certs), 0700u);
  EXPECT_EQ(Mode(certs + "/default-ecdsa.crt"), 0644u);
  ExpectWellFormed(paths->pairs[0].first, paths->pairs[0].second, "mx.example.com", true);
  ExpectWellFormed(paths->pairs[1].first, paths->pairs[1].second, "mx.example.com", false);
  // No temporary files left behind.
  EXPECT_THAT(ListDir(certs), ElementsAre("default-ecdsa.crt", "default-ecdsa.key",
                                          "default-rsa.crt", "default-rsa.key"));
}

TEST(DefaultCertificateTest, SecondCallReusesFilesByteForByte) {
  std::string data_dir = NewTempDir();
  auto first = EnsureDefaultCertificate(data_dir, "mx.example.com");
  ASSERT_TRUE(first.ok()) << first.status();
  std::vector<std::string> before;
  std::vector<ino_t> inodes;
  for (const auto& [cert, key] : first->pairs) {
    before.push_back(ReadFile(cert));
    before.push_back(ReadFile(key));
    struct stat st;
    ASSERT_EQ(stat(cert.c_str(), &st), 0);
    inodes.push_back(st.st_ino);
  }
  auto second = EnsureDefaultCertificate(data_dir, "mx.example.com");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->pairs, first->pairs);
  size_t i = 0, j = 0;
  for (const auto& [cert, key] : second->pairs) {
    EXPECT_EQ(ReadFile(cert), before[i++]);
    EXPECT_EQ(ReadFile(key), before[i++]);
    struct stat st;
    ASSERT_EQ(stat(cert.c_str(), &st), 0);
    EXPECT_EQ(st.st_ino, inodes[j++]);  // not even rewritten
  }
}

TEST(DefaultCertificateTest, CorruptCertificateIsReplaced) {
  std::string data_dir = NewTempDir();
  auto first = EnsureDefaultCertificate(data_dir, "mx.example.com");
  ASSERT_TRUE(first.ok()) << first.status();
  const auto& [cert, key] = first->pairs[0];
  const std::string rsa_cert_before = ReadFile(first->pairs[1].first);
  WriteFile(cert, "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n");
  ASSERT_EQ(LoadCert(cert), nullptr);

  auto second = EnsureDefaultCertificate(data_dir, "mx.example.com");
  ASSERT_TRUE(second.ok()) << second.status();
  ExpectWellFormed(cert, key, "mx.example.com", true);
  EXPECT_EQ(ReadFile(first->pairs[1].first), rsa_cert_before);  // the other pair untouched
}

TEST(DefaultCertificateTest, TruncatedOrMissingFilesAreReplaced) {
  std::string data_dir = NewTempDir();
  auto first = EnsureDefaultCertificate(data_dir, "mx.example.com");
  ASSERT_TRUE(first.ok()) << first.status();
  WriteFile(first->pairs[0].first, "");
  ASSERT_EQ(unlink(first->pairs[1].second.c_str()), 0);
  auto second = EnsureDefaultCertificate(data_dir, "mx.example.com");
  ASSERT_TRUE(second.ok()) << second.status();
  ExpectWellFormed(first->pairs[0].first, first->pairs[0].second, "mx.example.com", true);
  ExpectWellFormed(first->pairs[1].first, first->pairs[1].second, "mx.example.com", false);
}

TEST(DefaultCertificateTest, KeyMismatchingCertificateIsReplaced) {
  std::string data_dir = NewTempDir();
  auto first = EnsureDefaultCertificate(data_dir, "mx.example.com");
  ASSERT_TRUE(first.ok()) << first.status();
  const auto& [cert, key] = first->pairs[0];
  const std::string old_cert = ReadFile(cert);
  // Another valid P-256 key: parses, but is not the certificate's.
  PkeyPtr other(EVP_EC_gen("prime256v1"));
  ASSERT_NE(other, nullptr);
  FILE* f = fopen(key.c_str(), "w");
  ASSERT_NE(f, nullptr);
  ASSERT_TRUE(PEM_write_PrivateKey(f, other.get(), nullptr, nullptr, 0, nullptr, nullptr));
  fclose(f);
  ASSERT_NE(X509_check_private_key(LoadCert(cert).get(), LoadKey(key).get()), 1);

  auto second = EnsureDefaultCertificate(data_dir, "mx.example.com");
  ASSERT_TRUE(second.ok()) << second.status();
  ExpectWellFormed(cert, key, "mx.example.com", true);
  EXPECT_NE(ReadFile(cert), old_cert);
}

TEST(DefaultCertificateTest, WrongKeyTypeIsReplaced) {
  std::string data_dir = NewTempDir();
  auto first = EnsureDefaultCertificate(data_dir, "mx.example.com");
  ASSERT_TRUE(first.ok()) << first.status();
  // The RSA pair where the ECDSA pair belongs: matching, but the wrong kind.
  WriteFile(first->pairs[0].first, ReadFile(first->pairs[1].first));
  WriteFile(first->pairs[0].second, ReadFile(first->pairs[1].second));
  auto second = EnsureDefaultCertificate(data_dir, "mx.example.com");
  ASSERT_TRUE(second.ok()) << second.status();
  ExpectWellFormed(first->pairs[0].first, first->pairs[0].second, "mx.example.com", true);
}

TEST(DefaultCertificateTest, KeyModeIsRepairedWithoutRegenerating) {
  std::string data_dir = NewTempDir();
  auto first = EnsureDefaultCertificate(data_dir, "mx.example.com");
  ASSERT_TRUE(first.ok()) << first.status();
  const auto& [cert, key] = first->pairs[0];
  const std::string key_before = ReadFile(key);
  ASSERT_EQ(chmod(key.c_str(), 0644), 0);
  ASSERT_EQ(chmod((data_dir + "/certs").c_str(), 0755), 0);
  auto second = EnsureDefaultCertificate(data_dir, "mx.example.com");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(Mode(key), 0600u);
  EXPECT_EQ(Mode(data_dir + "/certs"), 0700u);
  EXPECT_EQ(ReadFile(key), key_before);
}

TEST(DefaultCertificateTest, CertificateNearExpiryIsRenewed) {
  std::string data_dir = NewTempDir();
  auto first = EnsureDefaultCertificate(data_dir, "mx.example.com");
  ASSERT_TRUE(first.ok()) << first.status();
  const auto& [cert_path, key_path] = first->pairs[0];
  // Same key, same name, but valid for 10 more days only.
  X509Ptr cert = LoadCert(cert_path);
  PkeyPtr key = LoadKey(key_path);
  ASSERT_TRUE(X509_gmtime_adj(X509_getm_notAfter(cert.get()), 10L * 24 * 3600));
  ASSERT_GT(X509_sign(cert.get(), key.get(), EVP_sha256()), 0);
  FILE* f = fopen(cert_path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  ASSERT_TRUE(PEM_write_X509(f, cert.get()));
  fclose(f);
  const std::string short_lived = ReadFile(cert_path);

  auto second = EnsureDefaultCertificate(data_dir, "mx.example.com");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(ReadFile(cert_path), short_lived);
  ExpectWellFormed(cert_path, key_path, "mx.example.com", true);
}

TEST(DefaultCertificateTest, NewHostnameGetsNewCertificates) {
  std::string data_dir = NewTempDir();
  ASSERT_TRUE(EnsureDefaultCertificate(data_dir, "old.example.com").ok());
  auto paths = EnsureDefaultCertificate(data_dir, "new.example.com");
  ASSERT_TRUE(paths.ok()) << paths.status();
  ExpectWellFormed(paths->pairs[0].first, paths->pairs[0].second, "new.example.com", true);
  ExpectWellFormed(paths->pairs[1].first, paths->pairs[1].second, "new.example.com", false);
}

TEST(DefaultCertificateTest, CreatesMissingDataDir) {
  std::string data_dir = NewTempDir() + "/var/postern";
  auto paths = EnsureDefaultCertificate(data_dir, "localhost");
  ASSERT_TRUE(paths.ok()) << paths.status();
  ExpectWellFormed(paths->pairs[0].first, paths->pairs[0].second, "localhost", true);
}

TEST(DefaultCertificateTest, RefusesUnusableHostnames) {
  std::string data_dir = NewTempDir();
  for (const std::string& bad : {std::string(""), std::string("a b"), std::string("x,DNS:evil"),
                                 std::string("host\n"), std::string(254, 'a')}) {
    auto r = EnsureDefaultCertificate(data_dir, bad);
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << bad << ": " << r.status();
  }
  EXPECT_TRUE(ListDir(data_dir).empty());  // nothing created
}

}  // namespace
}  // namespace postern::control
