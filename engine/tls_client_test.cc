// The client side of TLS: TlsClientContext and TlsSession's client mode,
// shaking hands in memory with a server TlsSession.
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/tls_client_context.h"
#include "engine/tls_context.h"
#include "engine/tls_session.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace postern::engine {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Optional;
using HandshakeResult = TlsSession::HandshakeResult;

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

// --- a tiny private PKI, generated once per test binary ---

struct TestCert {
  std::string cert_file;  // PEM
  std::string key_file;   // PEM
  bssl::UniquePtr<X509> x509;
  bssl::UniquePtr<EVP_PKEY> key;

  CertKeyPair pair() const { return {cert_file, key_file}; }
  std::string Der() const {
    uint8_t* der = nullptr;
    int len = i2d_X509(x509.get(), &der);
    std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
    OPENSSL_free(der);
    return out;
  }
  std::string DerSha256Hex() const {
    std::string der = Der();
    return Sha256Hex(reinterpret_cast<const uint8_t*>(der.data()), der.size());
  }
};

bssl::UniquePtr<EVP_PKEY> NewKey() {
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  EC_KEY_generate_key(ec.get());
  bssl::UniquePtr<EVP_PKEY> key(EVP_PKEY_new());
  EVP_PKEY_assign_EC_KEY(key.get(), ec.release());
  return key;
}

void AddExtension(X509* x, int nid, const char* value) {
  bssl::UniquePtr<X509_EXTENSION> ext(X509V3_EXT_nconf_nid(nullptr, nullptr, nid, value));
  ASSERT_TRUE(ext) << value;
  ASSERT_TRUE(X509_add_ext(x, ext.get(), -1));
}

struct CertSpec {
  std::string file;                  // base name of the PEM files
  std::string cn;                    // subject CN
  std::string san = "";              // "DNS:a,DNS:b"; empty: no subjectAltName
  const TestCert* issuer = nullptr;  // null: self-signed
  bool ca = false;
  long not_before = -3600;  // seconds from now
  long not_after = 86400;
};

TestCert MakeCert(const CertSpec& spec) {
  static int serial = 1;
  TestCert c;
  c.key = NewKey();
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

// --- contexts and an in-memory connection ---

std::unique_ptr<TlsServerContext> MakeServer(const TestCert& cert, TlsServerOptions options = {}) {
  options.certificates = {cert.pair()};
  auto ctx = TlsServerContext::Create(options);
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  return ctx.ok() ? std::move(*ctx) : nullptr;
}

std::unique_ptr<TlsClientContext> MakeClient(TlsClientOptions options = {}) {
  auto ctx = TlsClientContext::Create(options);
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  return ctx.ok() ? std::move(*ctx) : nullptr;
}

std::unique_ptr<TlsClientContext> MakeVerifyingClient() {
  return MakeClient({.verify_peer = true, .ca_file = Ca().cert_file});
}

struct Connection {
  std::unique_ptr<TlsSession> server;
  std::unique_ptr<TlsSession> client;
  HandshakeResult server_result = HandshakeResult::kWantIO;
  HandshakeResult client_result = HandshakeResult::kWantIO;
  bool done() const {
    return server_result == HandshakeResult::kDone && client_result == HandshakeResult::kDone;
  }
};

// Moves ciphertext both ways until both sides finish or one fails (its alert
// then reaches the other side).
Connection Connect(TlsServerContext* server_ctx, TlsClientContext* client_ctx,
                   std::string_view host) {
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

// The server greets; the client reads it (and any TLS 1.3 tickets with it).
void Greet(Connection& c) {
  ASSERT_TRUE(c.server->WritePlaintext("220 mx.partner.example ESMTP\r\n").ok());
  std::string wire;
  c.server->TakeCiphertext(&wire);
  c.client->FeedCiphertext(wire);
  std::string got;
  ASSERT_TRUE(c.client->ReadPlaintext(&got).ok());
  EXPECT_EQ(got, "220 mx.partner.example ESMTP\r\n");
}

// --- TlsClientContext ---

TEST(TlsClientContextTest, CreateErrors) {
  auto missing = TlsClientContext::Create({.verify_peer = true, .ca_file = "/nonexistent/ca.pem"});
  EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();

  // A PEM file without a certificate in it (a private key).
  auto keyfile = TlsClientContext::Create({.verify_peer = true, .ca_file = Ca().key_file});
  EXPECT_TRUE(absl::IsInvalidArgument(keyfile.status())) << keyfile.status();

  std::string garbage = absl::StrCat(TempDir(), "/garbage.pem");
  {
    bssl::UniquePtr<BIO> out(BIO_new_file(garbage.c_str(), "w"));
    BIO_puts(out.get(), "-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n");
  }
  auto bad = TlsClientContext::Create({.verify_peer = true, .ca_file = garbage});
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status())) << bad.status();

  // Without verify_peer the CA file is not read at all.
  auto no_verify = TlsClientContext::Create({.ca_file = "/nonexistent/ca.pem"});
  ASSERT_TRUE(no_verify.ok()) << no_verify.status();
  EXPECT_EQ((*no_verify)->ca_count(), 0u);
}

TEST(TlsClientContextTest, LoadsCaFileAndSystemStore) {
  auto ctx = MakeVerifyingClient();
  ASSERT_NE(ctx, nullptr);
  EXPECT_EQ(ctx->ca_count(), 1u);

  if (access(TlsClientContext::kSystemCaFile, R_OK) != 0) {
    GTEST_SKIP() << "no system CA bundle here";
  }
  auto system = MakeClient({.verify_peer = true});
  ASSERT_NE(system, nullptr);
  EXPECT_GT(system->ca_count(), 50u);
}

TEST(TlsClientContextTest, IpLiterals) {
  EXPECT_TRUE(TlsClientContext::IsIpLiteral("192.0.2.1"));
  EXPECT_TRUE(TlsClientContext::IsIpLiteral("2001:db8::1"));
  EXPECT_TRUE(TlsClientContext::IsIpLiteral("[2001:db8::1]"));
  EXPECT_FALSE(TlsClientContext::IsIpLiteral("mx.partner.example"));
  EXPECT_FALSE(TlsClientContext::IsIpLiteral("192.0.2.1.example"));
  EXPECT_FALSE(TlsClientContext::IsIpLiteral(""));
}

// --- TlsSession as a client ---

TEST(TlsClientSessionTest, Tls13HandshakeAndFacts) {
  auto server = MakeServer(Leaf());
  auto client = MakeClient();
  Connection c = Connect(server.get(), client.get(), "mx.partner.example");
  ASSERT_TRUE(c.done()) << c.client->failure_reason() << " / " << c.server->failure_reason();
  EXPECT_EQ(c.client->version(), "TLSv1.3");
  EXPECT_EQ(c.client->cipher(), c.server->cipher());
  EXPECT_THAT(c.client->cipher(), AnyOf("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                        "TLS_CHACHA20_POLY1305_SHA256"));
  EXPECT_FALSE(c.client->resumed());
  EXPECT_FALSE(c.client->version_mismatch());

  std::optional<PeerCertificate> peer = c.client->peer_certificate();
  ASSERT_TRUE(peer.has_value());
  EXPECT_EQ(peer->sha256_cert_hex, Leaf().DerSha256Hex());
  std::vector<std::string> chain = c.client->peer_chain();
  ASSERT_EQ(chain.size(), 1u);
  EXPECT_EQ(chain[0], Leaf().Der());
  // This context does not verify, so there is no verdict to report.
  EXPECT_EQ(c.client->peer_verify_result(), std::nullopt);
}

TEST(TlsClientSessionTest, FactsAreEmptyBeforeHandshake) {
  auto client = MakeVerifyingClient();
  TlsSession s(client.get(), "mx.partner.example");
  EXPECT_FALSE(s.HasCiphertext());  // nothing before the first DoHandshake
  EXPECT_EQ(s.DoHandshake(), HandshakeResult::kWantIO);
  EXPECT_TRUE(s.HasCiphertext());  // the ClientHello
  EXPECT_EQ(s.version(), "");
  EXPECT_TRUE(s.peer_chain().empty());
  EXPECT_EQ(s.peer_verify_result(), std::nullopt);
  EXPECT_FALSE(s.peer_certificate().has_value());
}

TEST(TlsClientSessionTest, CipherClassesOnTls12) {
  auto server = MakeServer(Leaf(), {.ciphers = CipherClass::kCompat});
  SSL_CTX_set_max_proto_version(server->get(), TLS1_2_VERSION);
  for (CipherClass cls : {CipherClass::kStrong, CipherClass::kPfs, CipherClass::kCompat}) {
    auto client = MakeClient({.ciphers = cls});
    Connection c = Connect(server.get(), client.get(), "mx.partner.example");
    ASSERT_TRUE(c.done()) << c.client->failure_reason();
    EXPECT_EQ(c.client->version(), "TLSv1.2");
    EXPECT_THAT(c.client->cipher(), HasSubstr("TLS_ECDHE_ECDSA_WITH_"));
  }
  // A strong client cannot talk to a server that only has CBC suites.
  auto cbc_server = MakeServer(Leaf());
  SSL_CTX_set_max_proto_version(cbc_server->get(), TLS1_2_VERSION);
  ASSERT_TRUE(SSL_CTX_set_strict_cipher_list(cbc_server->get(), "ECDHE-ECDSA-AES128-SHA"));
  auto strong = MakeClient({.ciphers = CipherClass::kStrong});
  Connection refused = Connect(cbc_server.get(), strong.get(), "mx.partner.example");
  EXPECT_EQ(refused.client_result, HandshakeResult::kFailed);
  EXPECT_FALSE(refused.client->version_mismatch());
  auto pfs = MakeClient({.ciphers = CipherClass::kPfs});
  Connection cbc = Connect(cbc_server.get(), pfs.get(), "mx.partner.example");
  ASSERT_TRUE(cbc.done()) << cbc.client->failure_reason();
  EXPECT_EQ(cbc.client->cipher(), "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA");
}

TEST(TlsClientSessionTest, VerificationIsRecordedNeverFatal) {
  auto client = MakeVerifyingClient();
  const struct {
    const char* name;
    const TestCert* cert;
    int expected;
  } cases[] = {
      {"signed by the CA", &Leaf(), X509_V_OK},
      {"self-signed", &SelfSigned(), X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT},
      {"expired", &Expired(), X509_V_ERR_CERT_HAS_EXPIRED},
  };
  for (const auto& tc : cases) {
    SCOPED_TRACE(tc.name);
    auto server = MakeServer(*tc.cert);
    Connection c = Connect(server.get(), client.get(), "mx.partner.example");
    ASSERT_TRUE(c.done()) << c.client->failure_reason();
    EXPECT_THAT(c.client->peer_verify_result(), Optional(tc.expected));
  }
  // Trusting a different CA: the same good leaf is untrusted.
  TestCert other_ca = MakeCert({.file = "other-ca", .cn = "Other CA", .ca = true});
  auto other = MakeClient({.verify_peer = true, .ca_file = other_ca.cert_file});
  auto server = MakeServer(Leaf());
  Connection c = Connect(server.get(), other.get(), "mx.partner.example");
  ASSERT_TRUE(c.done());
  EXPECT_THAT(c.client->peer_verify_result(),
              Optional(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY));
}

std::string* seen_sni = nullptr;

int RecordSni(SSL* ssl, int*, void*) {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  *seen_sni = name != nullptr ? name : "(none)";
  return SSL_TLSEXT_ERR_OK;
}

TEST(TlsClientSessionTest, SendsSniExceptForIpLiterals) {
  std::string sni;
  seen_sni = &sni;
  auto server = MakeServer(Leaf());
  SSL_CTX_set_tlsext_servername_callback(server->get(), &RecordSni);
  auto client = MakeClient();
  ASSERT_TRUE(Connect(server.get(), client.get(), "MX.Partner.Example.").done());
  EXPECT_EQ(sni, "mx.partner.example");
  ASSERT_TRUE(Connect(server.get(), client.get(), "192.0.2.25").done());
  EXPECT_EQ(sni, "(none)");
  ASSERT_TRUE(Connect(server.get(), client.get(), "").done());
  EXPECT_EQ(sni, "(none)");
  seen_sni = nullptr;
}

TEST(TlsClientSessionTest, ApplicationDataBothWays) {
  auto server = MakeServer(Leaf());
  auto client = MakeClient();
  Connection c = Connect(server.get(), client.get(), "mx.partner.example");
  ASSERT_TRUE(c.done());
  Greet(c);
  ASSERT_TRUE(c.client->WritePlaintext("EHLO relay.example\r\n").ok());
  std::string wire;
  c.client->TakeCiphertext(&wire);
  c.server->FeedCiphertext(wire);
  std::string got;
  ASSERT_TRUE(c.server->ReadPlaintext(&got).ok());
  EXPECT_EQ(got, "EHLO relay.example\r\n");

  c.client->Shutdown();
  wire.clear();
  c.client->TakeCiphertext(&wire);
  c.server->FeedCiphertext(wire);
  EXPECT_TRUE(TlsSession::IsPeerClosed(c.server->ReadPlaintext(&got).status()));
}

TEST(TlsClientSessionTest, VersionMismatchIsReported) {
  auto server = MakeServer(Leaf());
  SSL_CTX_set_max_proto_version(server->get(), TLS1_2_VERSION);
  auto client = MakeClient({.min_version = TlsVersion::kTls13});
  Connection c = Connect(server.get(), client.get(), "mx.partner.example");
  EXPECT_EQ(c.client_result, HandshakeResult::kFailed);
  EXPECT_EQ(c.server_result, HandshakeResult::kFailed);
  EXPECT_TRUE(c.client->version_mismatch()) << c.client->failure_reason();
  EXPECT_TRUE(c.server->version_mismatch()) << c.server->failure_reason();
  EXPECT_EQ(c.client->failure_reason(), "tlsv1 alert protocol version");
  EXPECT_EQ(c.client->version(), "");

  // A 1.2 client still gets through.
  auto client12 = MakeClient();
  Connection ok = Connect(server.get(), client12.get(), "mx.partner.example");
  ASSERT_TRUE(ok.done());
  EXPECT_EQ(ok.client->version(), "TLSv1.2");
}

void ExpectResumptionByHost(bool tls12) {
  auto server = MakeServer(Leaf());
  if (tls12) SSL_CTX_set_max_proto_version(server->get(), TLS1_2_VERSION);
  auto client = MakeVerifyingClient();
  Connection first = Connect(server.get(), client.get(), "mx.partner.example");
  ASSERT_TRUE(first.done());
  EXPECT_FALSE(first.client->resumed());
  Greet(first);  // TLS 1.3 tickets arrive with the greeting
  EXPECT_EQ(client->cached_sessions(), 1u);

  Connection second = Connect(server.get(), client.get(), "MX.partner.example");
  ASSERT_TRUE(second.done());
  EXPECT_TRUE(second.client->resumed());
  EXPECT_TRUE(second.server->resumed());
  // The facts of the original handshake come with the session.
  EXPECT_THAT(second.client->peer_verify_result(), Optional(X509_V_OK));
  ASSERT_TRUE(second.client->peer_certificate().has_value());
  EXPECT_EQ(second.client->peer_certificate()->sha256_cert_hex, Leaf().DerSha256Hex());
  EXPECT_EQ(second.client->peer_chain().size(), 1u);

  // Another host never gets this host's session.
  Connection other = Connect(server.get(), client.get(), "mx2.partner.example");
  ASSERT_TRUE(other.done());
  EXPECT_FALSE(other.client->resumed());
}

TEST(TlsClientSessionTest, ResumesByHostTls13) { ExpectResumptionByHost(false); }
TEST(TlsClientSessionTest, ResumesByHostTls12) { ExpectResumptionByHost(true); }

TEST(TlsClientSessionTest, SessionCacheBoundsAndOff) {
  auto server = MakeServer(Leaf());
  auto one = MakeClient({.session_cache_size = 1});
  for (const char* host : {"a.partner.example", "b.partner.example", "c.partner.example"}) {
    Connection c = Connect(server.get(), one.get(), host);
    ASSERT_TRUE(c.done());
    Greet(c);
    EXPECT_EQ(one->cached_sessions(), 1u);
  }
  Connection last = Connect(server.get(), one.get(), "c.partner.example");
  ASSERT_TRUE(last.done());
  EXPECT_TRUE(last.client->resumed());

  auto off = MakeClient({.session_cache_size = 0});
  Connection first = Connect(server.get(), off.get(), "mx.partner.example");
  ASSERT_TRUE(first.done());
  Greet(first);
  EXPECT_EQ(off->cached_sessions(), 0u);
  Connection second = Connect(server.get(), off.get(), "mx.partner.example");
  ASSERT_TRUE(second.done());
  EXPECT_FALSE(second.client->resumed());
}

}  // namespace
}  // namespace postern::engine
