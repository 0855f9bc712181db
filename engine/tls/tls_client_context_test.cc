// The client side of TLS: TlsClientContext and TlsSession's client mode,
// shaking hands in memory with a server TlsSession.
#include "engine/tls/tls_client_context.h"

#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/tls/tls_server_context.h"
#include "engine/tls/tls_session.h"
#include "engine/tls/tls_test_support.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

// In tls_test's namespace: the private PKI (Ca(), Leaf(), ...), MakeServer(),
// MakeClient() and Connect() are tls_test_support's.
namespace postern::engine::tls_test {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Optional;
using HandshakeResult = TlsSession::HandshakeResult;

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
}  // namespace postern::engine::tls_test
