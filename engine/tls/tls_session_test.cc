#include "engine/tls/tls_session.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pool.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/tls/tls_server_context.h"
#include "engine/tls/tls_test_support.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace postern::engine {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;
using tls_test::MakeCert;
using tls_test::NewEcdsaP256Key;
using tls_test::Sha256Hex;
using tls_test::TempDir;
using tls_test::TestCert;

// Certificates come from tls_test_support (self-signed here); the peer is a
// raw BoringSSL client, so its Connect() is not used.

bssl::UniquePtr<EVP_PKEY> NewRsaKey() {
  bssl::UniquePtr<RSA> rsa(RSA_new());
  bssl::UniquePtr<BIGNUM> e(BN_new());
  if (!BN_set_word(e.get(), RSA_F4) || !RSA_generate_key_ex(rsa.get(), 2048, e.get(), nullptr)) {
    return nullptr;
  }
  bssl::UniquePtr<EVP_PKEY> key(EVP_PKEY_new());
  if (!EVP_PKEY_assign_RSA(key.get(), rsa.release())) return nullptr;
  return key;
}

TestCert MakeSelfSigned(const std::string& name, bssl::UniquePtr<EVP_PKEY> key) {
  return MakeCert({.file = name, .cn = name, .key = std::move(key)});
}

// Generated once: RSA key generation takes a while.
const TestCert& EcdsaCert() {
  static const TestCert* c = new TestCert(MakeSelfSigned("server-ecdsa", NewEcdsaP256Key()));
  return *c;
}
const TestCert& RsaCert() {
  static const TestCert* c = new TestCert(MakeSelfSigned("server-rsa", NewRsaKey()));
  return *c;
}
const TestCert& ClientCert() {
  static const TestCert* c = new TestCert(MakeSelfSigned("client-ecdsa", NewEcdsaP256Key()));
  return *c;
}

std::unique_ptr<TlsServerContext> MakeServer(TlsServerOptions options) {
  if (options.certificates.empty()) options.certificates.push_back(EcdsaCert().pair());
  auto ctx = TlsServerContext::Create(options);
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  return ctx.ok() ? std::move(*ctx) : nullptr;
}

struct ClientOptions {
  uint16_t max_version = TLS1_3_VERSION;
  const char* ciphers = nullptr;  // TLS 1.2 list; null: BoringSSL's default
  std::vector<uint16_t> verify_sigalgs = {};
  const TestCert* cert = nullptr;
};

int OnNewClientSession(SSL* ssl, SSL_SESSION* session);  // after TestClient

bssl::UniquePtr<SSL_CTX> MakeClientCtx(const ClientOptions& o) {
  bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
  EXPECT_TRUE(SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION));
  EXPECT_TRUE(SSL_CTX_set_max_proto_version(ctx.get(), o.max_version));
  if (o.ciphers != nullptr) {
    EXPECT_TRUE(SSL_CTX_set_strict_cipher_list(ctx.get(), o.ciphers));
  }
  if (!o.verify_sigalgs.empty()) {
    EXPECT_TRUE(SSL_CTX_set_verify_algorithm_prefs(ctx.get(), o.verify_sigalgs.data(),
                                                   o.verify_sigalgs.size()));
  }
  if (o.cert != nullptr) {
    EXPECT_TRUE(SSL_CTX_use_certificate(ctx.get(), o.cert->x509.get()));
    EXPECT_TRUE(SSL_CTX_use_PrivateKey(ctx.get(), o.cert->key.get()));
  }
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_CLIENT);
  SSL_CTX_sess_set_new_cb(ctx.get(), &OnNewClientSession);
  // Self-signed server certificates: the client does not verify.
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  return ctx;
}

// A BoringSSL client over memory BIOs, the peer of a TlsSession.
class TestClient {
 public:
  explicit TestClient(SSL_CTX* ctx, SSL_SESSION* resume = nullptr) : ssl_(SSL_new(ctx)) {
    SSL_set_app_data(ssl_.get(), this);
    BIO* r = BIO_new(BIO_s_mem());
    BIO* w = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(r, -1);
    rbio_ = r;
    wbio_ = w;
    SSL_set_bio(ssl_.get(), r, w);
    SSL_set_connect_state(ssl_.get());
    if (resume != nullptr) SSL_set_session(ssl_.get(), resume);
  }
  SSL* ssl() { return ssl_.get(); }
  void Feed(const std::string& bytes) { BIO_write(rbio_, bytes.data(), bytes.size()); }
  std::string Take() {
    std::string out(BIO_pending(wbio_), '\0');
    if (!out.empty()) BIO_read(wbio_, out.data(), out.size());
    return out;
  }
  // 1 done, 0 want more, -1 failed.
  int Handshake() {
    int r = SSL_do_handshake(ssl_.get());
    if (r == 1) return 1;
    int e = SSL_get_error(ssl_.get(), r);
    ERR_clear_error();
    return e == SSL_ERROR_WANT_READ ? 0 : -1;
  }
  void Write(const std::string& data) {
    ASSERT_EQ(SSL_write(ssl_.get(), data.data(), data.size()), static_cast<int>(data.size()));
  }
  // Reads all available plaintext; *closed set on close_notify.
  std::string Read(bool* closed = nullptr) {
    std::string out;
    char buf[16384];
    for (;;) {
      int n = SSL_read(ssl_.get(), buf, sizeof(buf));
      if (n > 0) {
        out.append(buf, n);
        continue;
      }
      if (closed != nullptr) *closed = SSL_get_error(ssl_.get(), n) == SSL_ERROR_ZERO_RETURN;
      ERR_clear_error();
      return out;
    }
  }
  std::string PeerLeafSha256Hex() {
    const STACK_OF(CRYPTO_BUFFER)* chain = SSL_get0_peer_certificates(ssl_.get());
    if (chain == nullptr || sk_CRYPTO_BUFFER_num(chain) == 0) return "";
    const CRYPTO_BUFFER* leaf = sk_CRYPTO_BUFFER_value(chain, 0);
    return Sha256Hex(CRYPTO_BUFFER_data(leaf), CRYPTO_BUFFER_len(leaf));
  }
  // The last resumable session the server gave (BoringSSL hands TLS 1.3
  // sessions only to the new-session callback, as tickets arrive).
  bssl::UniquePtr<SSL_SESSION> Session() { return std::move(session_); }
  void SetSession(SSL_SESSION* session) { session_.reset(session); }

 private:
  bssl::UniquePtr<SSL> ssl_;
  bssl::UniquePtr<SSL_SESSION> session_;
  BIO* rbio_;
  BIO* wbio_;
};

int OnNewClientSession(SSL* ssl, SSL_SESSION* session) {
  static_cast<TestClient*>(SSL_get_app_data(ssl))->SetSession(session);
  return 1;  // keeps the reference
}

// Moves bytes both ways until both sides finish, one fails, or nothing moves.
TlsSession::HandshakeResult Pump(TlsSession& server, TestClient& client, int* client_state) {
  TlsSession::HandshakeResult result = TlsSession::HandshakeResult::kWantIO;
  *client_state = 0;
  for (int round = 0; round < 20; ++round) {
    if (*client_state == 0) *client_state = client.Handshake();
    std::string to_server = client.Take();
    server.FeedCiphertext(to_server);
    result = server.DoHandshake();
    std::string to_client;
    server.TakeCiphertext(&to_client);
    client.Feed(to_client);
    if (result == TlsSession::HandshakeResult::kFailed) {
      if (*client_state == 0) *client_state = client.Handshake();  // reads the alert
      break;
    }
    if (to_server.empty() && to_client.empty() && *client_state != 0) break;
  }
  return result;
}

struct Connection {
  std::unique_ptr<TlsSession> server;
  std::unique_ptr<TestClient> client;
  TlsSession::HandshakeResult result;
  int client_state;
};

Connection Connect(TlsServerContext* ctx, SSL_CTX* client_ctx, SSL_SESSION* resume = nullptr) {
  Connection c;
  c.server = std::make_unique<TlsSession>(ctx);
  c.client = std::make_unique<TestClient>(client_ctx, resume);
  c.result = Pump(*c.server, *c.client, &c.client_state);
  return c;
}

// The server greets; BoringSSL sends TLS 1.3 tickets with its first write.
// The client reads both and hands back the resumable session.
bssl::UniquePtr<SSL_SESSION> TakeSession(Connection& c) {
  EXPECT_TRUE(c.server->WritePlaintext("220 ready\r\n").ok());
  std::string wire;
  c.server->TakeCiphertext(&wire);
  c.client->Feed(wire);
  EXPECT_EQ(c.client->Read(), "220 ready\r\n");
  return c.client->Session();
}

void ExpectEstablished(const Connection& c) {
  EXPECT_EQ(c.result, TlsSession::HandshakeResult::kDone) << c.server->failure_reason();
  EXPECT_EQ(c.client_state, 1);
  EXPECT_TRUE(c.server->handshake_done());
  EXPECT_THAT(c.server->failure_reason(), IsEmpty());
}

void ExpectRefused(const Connection& c, const std::string& reason) {
  EXPECT_EQ(c.result, TlsSession::HandshakeResult::kFailed);
  EXPECT_EQ(c.server->failure_reason(), reason);
  EXPECT_EQ(c.client_state, -1);  // the alert reached the client
  EXPECT_FALSE(c.server->handshake_done());
  std::string out;
  EXPECT_FALSE(c.server->ReadPlaintext(&out).ok());
  EXPECT_FALSE(c.server->WritePlaintext("x").ok());
}

TEST(TlsSessionTest, Tls13HandshakeAndInfo) {
  auto ctx = MakeServer({});
  auto client_ctx = MakeClientCtx({});
  Connection c = Connect(ctx.get(), client_ctx.get());
  ExpectEstablished(c);
  EXPECT_EQ(c.server->version(), "TLSv1.3");
  EXPECT_THAT(c.server->cipher(), AnyOf("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                        "TLS_CHACHA20_POLY1305_SHA256"));
  EXPECT_EQ(c.server->cipher(), SSL_CIPHER_standard_name(SSL_get_current_cipher(c.client->ssl())));
  EXPECT_THAT(c.server->cipher_bits(), AnyOf(128, 256));
  EXPECT_EQ(c.server->cipher_alg_bits(), c.server->cipher_bits());
  EXPECT_FALSE(c.server->resumed());
  EXPECT_FALSE(c.server->peer_certificate().has_value());  // not requested
  EXPECT_EQ(c.client->PeerLeafSha256Hex(), EcdsaCert().DerSha256Hex());
}

TEST(TlsSessionTest, Tls12Handshake) {
  auto ctx = MakeServer({});
  auto client_ctx = MakeClientCtx({.max_version = TLS1_2_VERSION});
  Connection c = Connect(ctx.get(), client_ctx.get());
  ExpectEstablished(c);
  EXPECT_EQ(c.server->version(), "TLSv1.2");
  EXPECT_THAT(c.server->cipher(), StartsWith("TLS_ECDHE_ECDSA_WITH_"));
  EXPECT_THAT(c.server->cipher(), AnyOf(HasSubstr("GCM"), HasSubstr("CHACHA20_POLY1305")));
}

TEST(TlsSessionTest, InfoIsEmptyBeforeHandshake) {
  auto ctx = MakeServer({});
  TlsSession s(ctx.get());
  EXPECT_EQ(s.DoHandshake(), TlsSession::HandshakeResult::kWantIO);
  EXPECT_EQ(s.version(), "");
  EXPECT_EQ(s.cipher(), "");
  EXPECT_EQ(s.cipher_bits(), 0);
  EXPECT_FALSE(s.resumed());
  std::string out;
  EXPECT_TRUE(absl::IsFailedPrecondition(s.ReadPlaintext(&out).status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(s.WritePlaintext("x")));
  EXPECT_FALSE(s.HasCiphertext());
}

// The SNI the client sent, read after the handshake (postern-sink records
// it); none sent: "".
TEST(TlsSessionTest, ServerNameIsTheClientsSni) {
  auto ctx = MakeServer({});
  auto client_ctx = MakeClientCtx({});
  TlsSession server(ctx.get());
  TestClient client(client_ctx.get());
  ASSERT_TRUE(SSL_set_tlsext_host_name(client.ssl(), "mx.rcpt.test"));
  EXPECT_EQ(server.server_name(), "");
  int client_state = 0;
  ASSERT_EQ(Pump(server, client, &client_state), TlsSession::HandshakeResult::kDone);
  EXPECT_EQ(server.server_name(), "mx.rcpt.test");

  Connection none = Connect(ctx.get(), client_ctx.get());
  ExpectEstablished(none);
  EXPECT_EQ(none.server->server_name(), "");
}

void ExchangeData(uint16_t client_max_version) {
  auto ctx = MakeServer({});
  auto client_ctx = MakeClientCtx({.max_version = client_max_version});
  Connection c = Connect(ctx.get(), client_ctx.get());
  ExpectEstablished(c);
  TlsSession& server = *c.server;
  TestClient& client = *c.client;

  client.Write("EHLO client.example\r\n");
  server.FeedCiphertext(client.Take());
  std::string got;
  auto n = server.ReadPlaintext(&got);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, got.size());
  EXPECT_EQ(got, "EHLO client.example\r\n");
  EXPECT_EQ(*server.ReadPlaintext(&got), 0u);  // nothing more yet

  std::string big(100 * 1024, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + (i * 7) % 26);
  ASSERT_TRUE(server.WritePlaintext(big).ok());
  std::string wire;
  server.TakeCiphertext(&wire);
  EXPECT_GT(wire.size(), big.size());
  client.Feed(wire);
  EXPECT_EQ(client.Read(), big);

  // Client to server in pieces of odd sizes, as a socket would deliver them.
  client.Write(big);
  std::string from_client = client.Take();
  std::string received;
  for (size_t off = 0; off < from_client.size(); off += 1000) {
    server.FeedCiphertext(std::string_view(from_client).substr(off, 1000));
    ASSERT_TRUE(server.ReadPlaintext(&received).ok());
  }
  EXPECT_EQ(received, big);
}

TEST(TlsSessionTest, ApplicationDataBothWaysTls13) { ExchangeData(TLS1_3_VERSION); }
TEST(TlsSessionTest, ApplicationDataBothWaysTls12) { ExchangeData(TLS1_2_VERSION); }

TEST(TlsSessionTest, MinVersion13RefusesTls12Client) {
  auto ctx = MakeServer({.min_version = TlsVersion::kTls13});
  auto client_ctx = MakeClientCtx({.max_version = TLS1_2_VERSION});
  ExpectRefused(Connect(ctx.get(), client_ctx.get()), "unsupported protocol");
  // A TLS 1.3 client is still welcome.
  auto modern = MakeClientCtx({});
  ExpectEstablished(Connect(ctx.get(), modern.get()));
}

constexpr char kCbcOnly[] = "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA";
constexpr char kRsaKxOnly[] = "AES128-GCM-SHA256";

TEST(TlsSessionTest, StrongRefusesNonAeadClient) {
  auto ctx = MakeServer({.ciphers = CipherClass::kStrong});
  auto client_ctx = MakeClientCtx({.max_version = TLS1_2_VERSION, .ciphers = kCbcOnly});
  ExpectRefused(Connect(ctx.get(), client_ctx.get()), "no shared cipher");
}

TEST(TlsSessionTest, PfsAllowsEcdheCbcClient) {
  auto ctx = MakeServer({.ciphers = CipherClass::kPfs});
  auto client_ctx = MakeClientCtx({.max_version = TLS1_2_VERSION, .ciphers = kCbcOnly});
  Connection c = Connect(ctx.get(), client_ctx.get());
  ExpectEstablished(c);
  EXPECT_EQ(c.server->cipher(), "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA");
  EXPECT_EQ(c.server->cipher_bits(), 128);
}

TEST(TlsSessionTest, CompatAllowsRsaKeyExchangeWithRsaCert) {
  auto ctx = MakeServer({.certificates = {RsaCert().pair()}, .ciphers = CipherClass::kCompat});
  auto client_ctx = MakeClientCtx({.max_version = TLS1_2_VERSION, .ciphers = kRsaKxOnly});
  Connection c = Connect(ctx.get(), client_ctx.get());
  ExpectEstablished(c);
  EXPECT_EQ(c.server->cipher(), "TLS_RSA_WITH_AES_128_GCM_SHA256");
}

TEST(TlsSessionTest, PfsAndStrongRefuseRsaKeyExchange) {
  for (CipherClass cls : {CipherClass::kPfs, CipherClass::kStrong}) {
    auto ctx = MakeServer({.certificates = {RsaCert().pair()}, .ciphers = cls});
    auto client_ctx = MakeClientCtx({.max_version = TLS1_2_VERSION, .ciphers = kRsaKxOnly});
    ExpectRefused(Connect(ctx.get(), client_ctx.get()), "no shared cipher");
  }
}

TEST(TlsSessionTest, BothCertificatesPickByClientSupport) {
  auto ctx = MakeServer(
      {.certificates = {RsaCert().pair(), EcdsaCert().pair()}, .ciphers = CipherClass::kCompat});
  struct Case {
    const char* name;
    ClientOptions client;
    const TestCert* expected;
  };
  const std::vector<uint16_t> rsa_sigalgs = {SSL_SIGN_RSA_PSS_RSAE_SHA256,
                                             SSL_SIGN_RSA_PKCS1_SHA256};
  const Case cases[] = {
      {"tls13 default", {}, &EcdsaCert()},
      {"tls12 default", {.max_version = TLS1_2_VERSION}, &EcdsaCert()},
      {"tls13 rsa sigalgs only", {.verify_sigalgs = rsa_sigalgs}, &RsaCert()},
      {"tls12 ecdhe-rsa suites only",
       {.max_version = TLS1_2_VERSION, .ciphers = "ECDHE-RSA-AES128-GCM-SHA256"},
       &RsaCert()},
      {"tls12 rsa kx only", {.max_version = TLS1_2_VERSION, .ciphers = kRsaKxOnly}, &RsaCert()},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    auto client_ctx = MakeClientCtx(tc.client);
    Connection c = Connect(ctx.get(), client_ctx.get());
    ExpectEstablished(c);
    EXPECT_EQ(c.client->PeerLeafSha256Hex(), tc.expected->DerSha256Hex());
  }
}

TEST(TlsSessionTest, ClientCertificateFingerprints) {
  auto ctx = MakeServer({.request_client_cert = true});
  auto client_ctx = MakeClientCtx({.cert = &ClientCert()});
  Connection c = Connect(ctx.get(), client_ctx.get());
  ExpectEstablished(c);
  std::optional<PeerCertificate> peer = c.server->peer_certificate();
  ASSERT_TRUE(peer.has_value());
  EXPECT_EQ(peer->sha256_cert_hex, ClientCert().DerSha256Hex());
  EXPECT_EQ(peer->sha256_spki_hex, ClientCert().SpkiSha256Hex());
  EXPECT_EQ(peer->sha256_cert_hex.size(), 64u);
  EXPECT_NE(peer->sha256_cert_hex, peer->sha256_spki_hex);

  // TLS 1.2 and an RSA client certificate take the same path.
  TestCert rsa_client = MakeSelfSigned("client-rsa", NewRsaKey());
  auto rsa_client_ctx = MakeClientCtx({.max_version = TLS1_2_VERSION, .cert = &rsa_client});
  Connection c12 = Connect(ctx.get(), rsa_client_ctx.get());
  ExpectEstablished(c12);
  ASSERT_TRUE(c12.server->peer_certificate().has_value());
  EXPECT_EQ(c12.server->peer_certificate()->sha256_cert_hex, rsa_client.DerSha256Hex());
  EXPECT_EQ(c12.server->peer_certificate()->sha256_spki_hex, rsa_client.SpkiSha256Hex());
}

TEST(TlsSessionTest, ClientCertificateIsRequestedNotRequired) {
  auto ctx = MakeServer({.request_client_cert = true});
  auto client_ctx = MakeClientCtx({});
  Connection c = Connect(ctx.get(), client_ctx.get());
  ExpectEstablished(c);
  EXPECT_FALSE(c.server->peer_certificate().has_value());
}

void ExpectResumption(uint16_t version) {
  auto ctx = MakeServer({.request_client_cert = true});
  auto client_ctx = MakeClientCtx({.max_version = version, .cert = &ClientCert()});
  Connection first = Connect(ctx.get(), client_ctx.get());
  ExpectEstablished(first);
  EXPECT_FALSE(first.server->resumed());
  bssl::UniquePtr<SSL_SESSION> session = TakeSession(first);
  ASSERT_TRUE(session && SSL_SESSION_is_resumable(session.get()));

  Connection second = Connect(ctx.get(), client_ctx.get(), session.get());
  ExpectEstablished(second);
  EXPECT_TRUE(second.server->resumed());
  ASSERT_TRUE(second.server->peer_certificate().has_value());  // from the ticket
  EXPECT_EQ(second.server->peer_certificate()->sha256_cert_hex, ClientCert().DerSha256Hex());

  // One rotation: the old key still decrypts.
  ctx->RotateTicketKeys();
  Connection third = Connect(ctx.get(), client_ctx.get(), session.get());
  ExpectEstablished(third);
  EXPECT_TRUE(third.server->resumed());

  // Two rotations: the key is gone, a full handshake follows.
  ctx->RotateTicketKeys();
  Connection fourth = Connect(ctx.get(), client_ctx.get(), session.get());
  ExpectEstablished(fourth);
  EXPECT_FALSE(fourth.server->resumed());
}

TEST(TlsSessionTest, TicketResumptionTls13) { ExpectResumption(TLS1_3_VERSION); }
TEST(TlsSessionTest, TicketResumptionTls12) { ExpectResumption(TLS1_2_VERSION); }

TEST(TlsSessionTest, SharedTicketKeyMaterialResumesAcrossContexts) {
  auto a = MakeServer({});
  auto b = MakeServer({});
  std::string material(TlsServerContext::kTicketKeyMaterialSize, 'k');
  ASSERT_TRUE(a->RotateTicketKeys(material).ok());
  auto client_ctx = MakeClientCtx({});
  Connection first = Connect(a.get(), client_ctx.get());
  ExpectEstablished(first);
  bssl::UniquePtr<SSL_SESSION> session = TakeSession(first);

  Connection elsewhere = Connect(b.get(), client_ctx.get(), session.get());
  ExpectEstablished(elsewhere);
  EXPECT_FALSE(elsewhere.server->resumed());  // b cannot read a's ticket

  ASSERT_TRUE(b->RotateTicketKeys(material).ok());
  Connection shared = Connect(b.get(), client_ctx.get(), session.get());
  ExpectEstablished(shared);
  EXPECT_TRUE(shared.server->resumed());

  EXPECT_TRUE(absl::IsInvalidArgument(b->RotateTicketKeys("short")));
}

TEST(TlsSessionTest, GarbageFailsWithReason) {
  auto ctx = MakeServer({});
  const struct {
    std::string bytes;
    std::string reason;
  } cases[] = {
      {"EHLO example.com\r\n", "wrong version number"},
      {"GET / HTTP/1.1\r\n\r\n", "http request"},
      // A handshake record holding an empty ClientHello.
      {std::string("\x16\x03\x01\x00\x04\x01\x00\x00\x00", 9), "decode error"},
      // A fatal handshake_failure alert instead of a ClientHello.
      {std::string("\x15\x03\x01\x00\x02\x02\x28", 7), "sslv3 alert handshake failure"},
      // An application data record before any handshake.
      {std::string("\x17\x03\x03\x00\x03\x01\x02\x03", 8), "unexpected record"},
  };
  for (const auto& tc : cases) {
    SCOPED_TRACE(tc.reason);
    TlsSession s(ctx.get());
    s.FeedCiphertext(tc.bytes);
    EXPECT_EQ(s.DoHandshake(), TlsSession::HandshakeResult::kFailed);
    EXPECT_EQ(s.failure_reason(), tc.reason);
    EXPECT_EQ(s.DoHandshake(), TlsSession::HandshakeResult::kFailed);  // stays failed
    s.FeedCiphertext(tc.bytes);
    EXPECT_EQ(s.DoHandshake(), TlsSession::HandshakeResult::kFailed);
  }
}

TEST(TlsSessionTest, EofDuringHandshake) {
  auto ctx = MakeServer({});
  auto client_ctx = MakeClientCtx({});
  TestClient client(client_ctx.get());
  client.Handshake();
  std::string hello = client.Take();
  TlsSession s(ctx.get());
  s.FeedCiphertext(std::string_view(hello).substr(0, hello.size() / 2));
  EXPECT_EQ(s.DoHandshake(), TlsSession::HandshakeResult::kWantIO);
  s.FeedEof();
  EXPECT_EQ(s.DoHandshake(), TlsSession::HandshakeResult::kFailed);
  EXPECT_EQ(s.failure_reason(), "unexpected eof");
}

TEST(TlsSessionTest, CloseNotifyBothWays) {
  auto ctx = MakeServer({});
  auto client_ctx = MakeClientCtx({});
  Connection c = Connect(ctx.get(), client_ctx.get());
  ExpectEstablished(c);
  c.client->Write("QUIT\r\n");
  SSL_shutdown(c.client->ssl());
  c.server->FeedCiphertext(c.client->Take());
  std::string got;
  auto n = c.server->ReadPlaintext(&got);
  ASSERT_TRUE(n.ok()) << n.status();  // data first
  EXPECT_EQ(got, "QUIT\r\n");
  auto closed = c.server->ReadPlaintext(&got);
  EXPECT_TRUE(TlsSession::IsPeerClosed(closed.status())) << closed.status();

  // The server may still answer, then closes its side.
  ASSERT_TRUE(c.server->WritePlaintext("221 2.0.0 Bye\r\n").ok());
  c.server->Shutdown();
  c.server->Shutdown();  // once only
  EXPECT_TRUE(absl::IsFailedPrecondition(c.server->WritePlaintext("x")));
  std::string wire;
  c.server->TakeCiphertext(&wire);
  c.client->Feed(wire);
  bool client_saw_close = false;
  EXPECT_EQ(c.client->Read(&client_saw_close), "221 2.0.0 Bye\r\n");
  EXPECT_TRUE(client_saw_close);
}

TEST(TlsSessionTest, EofWithoutCloseNotifyIsTruncation) {
  auto ctx = MakeServer({});
  auto client_ctx = MakeClientCtx({});
  Connection c = Connect(ctx.get(), client_ctx.get());
  ExpectEstablished(c);
  c.client->Write("DATA\r\n");
  c.server->FeedCiphertext(c.client->Take());
  c.server->FeedEof();
  std::string got;
  auto n = c.server->ReadPlaintext(&got);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(got, "DATA\r\n");
  auto err = c.server->ReadPlaintext(&got);
  EXPECT_TRUE(absl::IsAborted(err.status())) << err.status();
  EXPECT_FALSE(TlsSession::IsPeerClosed(err.status()));
  EXPECT_EQ(c.server->failure_reason(), "unexpected eof");
}

TEST(TlsSessionTest, CorruptRecordAfterHandshakeIsFatal) {
  auto ctx = MakeServer({});
  auto client_ctx = MakeClientCtx({});
  Connection c = Connect(ctx.get(), client_ctx.get());
  ExpectEstablished(c);
  c.client->Write("MAIL FROM:<a@b>\r\n");
  std::string wire = c.client->Take();
  wire[wire.size() - 3] ^= 0x01;  // inside the AEAD tag
  c.server->FeedCiphertext(wire);
  std::string got;
  auto n = c.server->ReadPlaintext(&got);
  EXPECT_TRUE(absl::IsAborted(n.status())) << n.status();
  EXPECT_EQ(c.server->failure_reason(), "bad decrypt");
  EXPECT_TRUE(got.empty());
  std::string alert;
  c.server->TakeCiphertext(&alert);
  EXPECT_FALSE(alert.empty());  // bad_record_mac goes to the peer
}

TEST(TlsServerContextTest, CreateErrors) {
  EXPECT_TRUE(absl::IsInvalidArgument(TlsServerContext::Create({}).status()));
  EXPECT_TRUE(absl::IsNotFound(
      TlsServerContext::Create({.certificates = {{"/nonexistent/a.crt", "/nonexistent/a.key"}}})
          .status()));
  // Key of another certificate.
  auto mismatch =
      TlsServerContext::Create({.certificates = {{EcdsaCert().cert_file, ClientCert().key_file}}});
  EXPECT_TRUE(absl::IsInvalidArgument(mismatch.status()));
  EXPECT_THAT(std::string(mismatch.status().message()), HasSubstr("does not match"));
  // Two of a kind.
  EXPECT_TRUE(absl::IsInvalidArgument(
      TlsServerContext::Create({.certificates = {EcdsaCert().pair(), ClientCert().pair()}})
          .status()));
  // A key file given as certificate.
  EXPECT_TRUE(absl::IsInvalidArgument(
      TlsServerContext::Create({.certificates = {{EcdsaCert().key_file, EcdsaCert().key_file}}})
          .status()));
}

TEST(TlsServerContextTest, ChainFileIsServedWhole) {
  // Leaf followed by another certificate: both go to the client.
  std::string chain_file = absl::StrCat(TempDir(), "/chain.crt");
  {
    bssl::UniquePtr<BIO> out(BIO_new_file(chain_file.c_str(), "w"));
    ASSERT_TRUE(PEM_write_bio_X509(out.get(), EcdsaCert().x509.get()));
    ASSERT_TRUE(PEM_write_bio_X509(out.get(), ClientCert().x509.get()));
  }
  auto ctx = MakeServer({.certificates = {{chain_file, EcdsaCert().key_file}}});
  auto client_ctx = MakeClientCtx({});
  Connection c = Connect(ctx.get(), client_ctx.get());
  ExpectEstablished(c);
  const STACK_OF(CRYPTO_BUFFER)* chain = SSL_get0_peer_certificates(c.client->ssl());
  ASSERT_NE(chain, nullptr);
  EXPECT_EQ(sk_CRYPTO_BUFFER_num(chain), 2u);
}

}  // namespace
}  // namespace postern::engine
