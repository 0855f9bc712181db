#include "engine/tls/tls_test_support.h"

#include <openssl/bio.h>
#include <openssl/ec_key.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace postern::engine::tls_test {
namespace {

void AddExtension(X509* x, int nid, const char* value) {
  bssl::UniquePtr<X509_EXTENSION> ext(X509V3_EXT_nconf_nid(nullptr, nullptr, nid, value));
  ASSERT_TRUE(ext) << value;
  ASSERT_TRUE(X509_add_ext(x, ext.get(), -1));
}

}  // namespace

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

std::string Sha256Hex(const uint8_t* p, size_t n) {
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(p, n, digest);
  std::string out;
  for (uint8_t b : digest) absl::StrAppend(&out, absl::Hex(b, absl::kZeroPad2));
  return out;
}

std::string TestCert::Der() const {
  uint8_t* der = nullptr;
  int len = i2d_X509(x509.get(), &der);
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

std::string TestCert::DerSha256Hex() const {
  std::string der = Der();
  return Sha256Hex(reinterpret_cast<const uint8_t*>(der.data()), der.size());
}

std::string TestCert::SpkiSha256Hex() const {
  uint8_t* der = nullptr;
  int len = i2d_PUBKEY(key.get(), &der);
  std::string hex = Sha256Hex(der, static_cast<size_t>(len));
  OPENSSL_free(der);
  return hex;
}

bssl::UniquePtr<EVP_PKEY> NewEcdsaP256Key() {
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  if (!ec || !EC_KEY_generate_key(ec.get())) return nullptr;
  bssl::UniquePtr<EVP_PKEY> key(EVP_PKEY_new());
  if (!EVP_PKEY_assign_EC_KEY(key.get(), ec.release())) return nullptr;
  return key;
}

TestCert MakeCert(CertSpec spec) {
  static int serial = 1;
  TestCert c;
  c.key = spec.key != nullptr ? std::move(spec.key) : NewEcdsaP256Key();
  if (c.key == nullptr) {
    ADD_FAILURE() << "no key for " << spec.file;
    return c;
  }
  c.x509.reset(X509_new());
  X509* x = c.x509.get();
  X509_set_version(x, X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), spec.not_before);
  X509_gmtime_adj(X509_getm_notAfter(x), spec.not_after);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                             reinterpret_cast<const uint8_t*>(spec.cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x, spec.issuer != nullptr ? X509_get_subject_name(spec.issuer->x509.get())
                                                 : X509_get_subject_name(x));
  X509_set_pubkey(x, c.key.get());
  if (spec.ca) {
    AddExtension(x, NID_basic_constraints, "critical,CA:TRUE");
    AddExtension(x, NID_key_usage, "critical,keyCertSign,cRLSign");
  }
  if (!spec.san.empty()) AddExtension(x, NID_subject_alt_name, spec.san.c_str());
  EVP_PKEY* signer = spec.issuer != nullptr ? spec.issuer->key.get() : c.key.get();
  EXPECT_GT(X509_sign(x, signer, EVP_sha256()), 0);
  c.cert_file = absl::StrCat(TempDir(), "/", spec.file, ".crt");
  c.key_file = absl::StrCat(TempDir(), "/", spec.file, ".key");
  bssl::UniquePtr<BIO> cert_out(BIO_new_file(c.cert_file.c_str(), "w"));
  EXPECT_TRUE(PEM_write_bio_X509(cert_out.get(), x));
  bssl::UniquePtr<BIO> key_out(BIO_new_file(c.key_file.c_str(), "w"));
  EXPECT_TRUE(
      PEM_write_bio_PrivateKey(key_out.get(), c.key.get(), nullptr, nullptr, 0, nullptr, nullptr));
  return c;
}

const TestCert& Ca() {
  static const TestCert* c = new TestCert(MakeCert({.file = "ca", .cn = "Test CA", .ca = true}));
  return *c;
}

const TestCert& Leaf() {
  static const TestCert* c = new TestCert(MakeCert({.file = "leaf",
                                                    .cn = "mx.partner.example",
                                                    .san = "DNS:mx.partner.example",
                                                    .issuer = &Ca()}));
  return *c;
}

const TestCert& SelfSigned() {
  static const TestCert* c = new TestCert(
      MakeCert({.file = "self", .cn = "mx.partner.example", .san = "DNS:mx.partner.example"}));
  return *c;
}

const TestCert& Expired() {
  static const TestCert* c = new TestCert(MakeCert({.file = "expired",
                                                    .cn = "mx.partner.example",
                                                    .san = "DNS:mx.partner.example",
                                                    .issuer = &Ca(),
                                                    .not_before = -2 * 86400,
                                                    .not_after = -86400}));
  return *c;
}

std::unique_ptr<TlsServerContext> MakeServer(const TestCert& cert, TlsServerOptions options) {
  options.certificates = {cert.pair()};
  auto ctx = TlsServerContext::Create(options);
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  return ctx.ok() ? std::move(*ctx) : nullptr;
}

std::unique_ptr<TlsClientContext> MakeClient(TlsClientOptions options) {
  auto ctx = TlsClientContext::Create(options);
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  return ctx.ok() ? std::move(*ctx) : nullptr;
}

std::unique_ptr<TlsClientContext> MakeVerifyingClient() {
  return MakeClient({.verify_peer = true, .ca_file = Ca().cert_file});
}

Connection Connect(TlsServerContext* server_ctx, TlsClientContext* client_ctx,
                   std::string_view host) {
  using HandshakeResult = TlsSession::HandshakeResult;
  Connection c;
  c.server = std::make_unique<TlsSession>(server_ctx);
  c.client = std::make_unique<TlsSession>(client_ctx, host);
  for (int round = 0; round < 10; ++round) {
    c.client_result = c.client->DoHandshake();
    std::string wire;
    c.client->TakeCiphertext(&wire);
    c.server->FeedCiphertext(wire);
    c.server_result = c.server->DoHandshake();
    wire.clear();
    c.server->TakeCiphertext(&wire);
    c.client->FeedCiphertext(wire);
    if (c.client_result == HandshakeResult::kFailed) break;
    if (c.server_result == HandshakeResult::kFailed) {
      c.client_result = c.client->DoHandshake();  // reads the alert
      break;
    }
    if (c.done()) break;
  }
  return c;
}

}  // namespace postern::engine::tls_test
