// OutboundTlsCheck over real in-memory handshakes between a server
// TlsSession and a client TlsSession, plus the pure name and pin rules.
#include "engine/outbound/outbound_tls_check.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/tls/tls_client_context.h"
#include "engine/tls/tls_server_context.h"
#include "engine/tls/tls_session.h"
#include "engine/tls/tls_test_support.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/config.pb.h"

// In tls_test's namespace: the private PKI (Ca(), Leaf(), ...), MakeServer(),
// MakeClient() and Connect() are tls_test_support's.
namespace postern::engine::tls_test {
namespace {

using ::testing::HasSubstr;
using HandshakeResult = TlsSession::HandshakeResult;
using config::v1::OutboundTlsMode;

// Certificates for the name rules, beside the shared ones.
const TestCert& Wildcard() {
  static const TestCert* c = new TestCert(MakeCert({.file = "wildcard",
                                                    .cn = "*.partner.example",
                                                    .san = "DNS:*.partner.example",
                                                    .issuer = &Ca()}));
  return *c;
}
// No subjectAltName: the CN is the name.
const TestCert& CnOnly() {
  static const TestCert* c =
      new TestCert(MakeCert({.file = "cn-only", .cn = "mx.partner.example", .issuer = &Ca()}));
  return *c;
}
// A dNSName present: the CN no longer counts.
const TestCert& SanOtherCn() {
  static const TestCert* c = new TestCert(MakeCert({.file = "san-other",
                                                    .cn = "mx.partner.example",
                                                    .san = "DNS:mx.other.example,IP:192.0.2.1",
                                                    .issuer = &Ca()}));
  return *c;
}
// Only an IP address in subjectAltName: no dNSName, so the CN counts.
const TestCert& SanIpCn() {
  static const TestCert* c = new TestCert(MakeCert(
      {.file = "san-ip", .cn = "mx.partner.example", .san = "IP:192.0.2.1", .issuer = &Ca()}));
  return *c;
}

// The check's inputs after a handshake with a server presenting `cert`.
OutboundTlsFacts Handshake(const TestCert& cert, TlsClientContext* client,
                           std::string_view host = "mx.partner.example") {
  auto server = MakeServer(cert);
  Connection c = Connect(server.get(), client, host);
  EXPECT_TRUE(c.done()) << c.client->failure_reason();
  return OutboundTlsFacts::FromSession(*c.client);
}

OutboundTlsCheck MakeCheck(OutboundTlsRequirements r) {
  auto check = OutboundTlsCheck::Create(std::move(r));
  EXPECT_TRUE(check.ok()) << check.status();
  return std::move(*check);
}

OutboundTlsCheck Verify(std::vector<std::string> match = {}) {
  return MakeCheck({.mode = config::v1::OUTBOUND_TLS_MODE_VERIFY, .match = std::move(match)});
}

OutboundTlsCheck Pin(std::vector<std::string> pins) {
  return MakeCheck({.mode = config::v1::OUTBOUND_TLS_MODE_PIN, .pins = std::move(pins)});
}

void ExpectOk(const OutboundTlsVerdict& v) {
  EXPECT_TRUE(v.ok) << v.result_type << ": " << v.diagnostic;
  EXPECT_EQ(v.result_type, "");
}

void ExpectFail(const OutboundTlsVerdict& v, const std::string& type) {
  EXPECT_FALSE(v.ok) << v.diagnostic;
  EXPECT_EQ(v.result_type, type) << v.diagnostic;
  EXPECT_FALSE(v.diagnostic.empty());
}

// --- verify ---

TEST(OutboundTlsCheckTest, VerifyPassesWithTheRightCaAndName) {
  auto client = MakeVerifyingClient();
  OutboundTlsFacts facts = Handshake(Leaf(), client.get());
  OutboundTlsVerdict v = Verify().Evaluate(facts, "mx.partner.example", "partner.example");
  ExpectOk(v);
  EXPECT_THAT(v.diagnostic, HasSubstr("mx.partner.example"));
  // Case and a trailing dot (as MX records are written) do not matter.
  ExpectOk(Verify().Evaluate(facts, "MX.Partner.Example.", "partner.example"));
}

TEST(OutboundTlsCheckTest, VerifyRejectsSelfSigned) {
  auto client = MakeVerifyingClient();
  OutboundTlsFacts facts = Handshake(SelfSigned(), client.get());
  ExpectFail(Verify().Evaluate(facts, "mx.partner.example", "partner.example"),
             kTlsrptCertificateNotTrusted);
}

TEST(OutboundTlsCheckTest, VerifyRejectsAnotherCa) {
  TestCert other_ca = MakeCert({.file = "other-ca", .cn = "Other CA", .ca = true});
  auto client = MakeClient({.verify_peer = true, .ca_file = other_ca.cert_file});
  OutboundTlsFacts facts = Handshake(Leaf(), client.get());
  ExpectFail(Verify().Evaluate(facts, "mx.partner.example", "partner.example"),
             kTlsrptCertificateNotTrusted);
}

TEST(OutboundTlsCheckTest, VerifyRejectsWrongName) {
  auto client = MakeVerifyingClient();
  OutboundTlsFacts facts = Handshake(Leaf(), client.get(), "mx.elsewhere.example");
  OutboundTlsVerdict v = Verify().Evaluate(facts, "mx.elsewhere.example", "elsewhere.example");
  ExpectFail(v, kTlsrptCertificateHostMismatch);
  EXPECT_THAT(v.diagnostic, HasSubstr("mx.partner.example"));
  EXPECT_THAT(v.diagnostic, HasSubstr("mx.elsewhere.example"));
  // Configured match names replace the defaults.
  ExpectOk(Verify({"mx.partner.example"}).Evaluate(facts, "mx.elsewhere.example", "x.example"));
  ExpectFail(Verify({"partner.example"}).Evaluate(facts, "mx.partner.example", "partner.example"),
             kTlsrptCertificateHostMismatch);
}

TEST(OutboundTlsCheckTest, VerifyDefaultNamesAreMxHostAndDomain) {
  auto client = MakeVerifyingClient();
  // A certificate for the recipient domain itself, served by some MX.
  TestCert domain_cert =
      MakeCert({.file = "domain", .cn = "x", .san = "DNS:partner.example", .issuer = &Ca()});
  OutboundTlsFacts facts = Handshake(domain_cert, client.get(), "mx9.hosting.example");
  ExpectOk(Verify().Evaluate(facts, "mx9.hosting.example", "partner.example"));
  ExpectFail(Verify().Evaluate(facts, "mx9.hosting.example", "other.example"),
             kTlsrptCertificateHostMismatch);
}

TEST(OutboundTlsCheckTest, VerifyRejectsExpired) {
  auto client = MakeVerifyingClient();
  OutboundTlsFacts facts = Handshake(Expired(), client.get());
  OutboundTlsVerdict v = Verify().Evaluate(facts, "mx.partner.example", "partner.example");
  ExpectFail(v, kTlsrptCertificateExpired);
  EXPECT_THAT(v.diagnostic, HasSubstr("expired"));
}

TEST(OutboundTlsCheckTest, VerifyNeedsAVerifyingContext) {
  auto client = MakeClient();  // no CA store: the chain was never checked
  OutboundTlsFacts facts = Handshake(Leaf(), client.get());
  ASSERT_FALSE(facts.verify_result.has_value());
  ExpectFail(Verify().Evaluate(facts, "mx.partner.example", "partner.example"),
             kTlsrptValidationFailure);
}

TEST(OutboundTlsCheckTest, WildcardCertificate) {
  auto client = MakeVerifyingClient();
  OutboundTlsFacts facts = Handshake(Wildcard(), client.get(), "a.partner.example");
  ExpectOk(Verify().Evaluate(facts, "a.partner.example", "x.example"));
  ExpectOk(Verify().Evaluate(facts, "MX-1.Partner.Example.", "x.example"));
  ExpectFail(Verify().Evaluate(facts, "a.b.partner.example", "x.example"),
             kTlsrptCertificateHostMismatch);
  ExpectFail(Verify().Evaluate(facts, "partner.example", "x.example"),
             kTlsrptCertificateHostMismatch);
  ExpectFail(Verify().Evaluate(facts, "a.otherpartner.example", "x.example"),
             kTlsrptCertificateHostMismatch);
}

TEST(OutboundTlsCheckTest, CommonNameOnlyWithoutDnsNames) {
  auto client = MakeVerifyingClient();
  ExpectOk(Verify().Evaluate(Handshake(CnOnly(), client.get()), "mx.partner.example", "x.example"));
  ExpectOk(
      Verify().Evaluate(Handshake(SanIpCn(), client.get()), "mx.partner.example", "x.example"));
  ExpectFail(
      Verify().Evaluate(Handshake(SanOtherCn(), client.get()), "mx.partner.example", "x.example"),
      kTlsrptCertificateHostMismatch);
  // IP addresses in subjectAltName are not DNS names either.
  ExpectFail(Verify().Evaluate(Handshake(SanOtherCn(), client.get()), "192.0.2.1", "x.example"),
             kTlsrptCertificateHostMismatch);
}

TEST(OutboundTlsCheckTest, PresentedNames) {
  EXPECT_THAT(*OutboundTlsCheck::PresentedNames(Leaf().Der()),
              ::testing::ElementsAre("mx.partner.example"));
  EXPECT_THAT(*OutboundTlsCheck::PresentedNames(SanOtherCn().Der()),
              ::testing::ElementsAre("mx.other.example"));
  EXPECT_THAT(*OutboundTlsCheck::PresentedNames(CnOnly().Der()),
              ::testing::ElementsAre("mx.partner.example"));
  EXPECT_TRUE(absl::IsInvalidArgument(OutboundTlsCheck::PresentedNames("garbage").status()));
}

TEST(OutboundTlsCheckTest, NameMatchingRules) {
  const auto match = &OutboundTlsCheck::NameMatches;
  EXPECT_TRUE(match("mx.partner.example", "mx.partner.example"));
  EXPECT_TRUE(match("MX.PARTNER.EXAMPLE", "mx.Partner.example."));
  EXPECT_FALSE(match("mx.partner.example", "mx.partner.example.net"));
  EXPECT_FALSE(match("", ""));
  EXPECT_TRUE(match("a.partner.example", "*.partner.example"));
  EXPECT_FALSE(match("a.b.partner.example", "*.partner.example"));
  EXPECT_FALSE(match("partner.example", "*.partner.example"));
  EXPECT_FALSE(match(".partner.example", "*.partner.example"));
  // Partial-label and non-left-most wildcards, and wildcards over one label.
  EXPECT_FALSE(match("mx.partner.example", "m*.partner.example"));
  EXPECT_FALSE(match("mx.partner.example", "*x.partner.example"));
  EXPECT_FALSE(match("mx.partner.example", "mx.*.example"));
  EXPECT_FALSE(match("mx.partner.example", "*.*.example"));
  EXPECT_FALSE(match("partner.example", "*.example"));
  EXPECT_FALSE(match("mx.partner.example", "*"));
  // A reference name is never a pattern.
  EXPECT_FALSE(match("*.partner.example", "*.partner.example"));
  // No wildcard for IP literals ("192" + ".0.2.1" would otherwise match).
  EXPECT_FALSE(match("192.0.2.1", "*.0.2.1"));
  EXPECT_TRUE(match("192.0.2.1", "192.0.2.1"));
  // An embedded NUL or non-ASCII never matches.
  EXPECT_FALSE(match("mx.partner.example", std::string("mx.partner.example\0.evil", 24)));
  EXPECT_FALSE(match("mx.partner.example", "mx.partner.exämple"));
}

// --- pin ---

TEST(OutboundTlsCheckTest, PinOnLeafOrSpki) {
  auto client = MakeClient();  // pinning needs no CA
  OutboundTlsFacts facts = Handshake(SelfSigned(), client.get());
  const std::string cert_pin = absl::StrCat("sha256:", SelfSigned().DerSha256Hex());
  const std::string spki_pin = absl::StrCat("sha256:", SelfSigned().SpkiSha256Hex());
  const std::string wrong_pin = absl::StrCat("sha256:", Leaf().SpkiSha256Hex());
  ExpectOk(Pin({cert_pin}).Evaluate(facts, "mx.partner.example", "partner.example"));
  ExpectOk(Pin({spki_pin}).Evaluate(facts, "mx.partner.example", "partner.example"));
  // Upper-case hex is the same pin.
  ExpectOk(Pin({absl::StrCat("SHA256:", absl::AsciiStrToUpper(SelfSigned().SpkiSha256Hex()))})
               .Evaluate(facts, "mx.partner.example", "partner.example"));
  // Names do not matter for pins.
  ExpectOk(Pin({cert_pin}).Evaluate(facts, "mx.elsewhere.example", "elsewhere.example"));

  OutboundTlsVerdict v = Pin({wrong_pin}).Evaluate(facts, "mx.partner.example", "partner.example");
  ExpectFail(v, kTlsrptPinMismatch);
  EXPECT_THAT(v.diagnostic, HasSubstr(SelfSigned().DerSha256Hex()));
  EXPECT_THAT(v.diagnostic, HasSubstr(SelfSigned().SpkiSha256Hex()));
}

TEST(OutboundTlsCheckTest, PinSetWithCurrentAndNextKey) {
  auto client = MakeClient();
  const std::string current = absl::StrCat("sha256:", SelfSigned().SpkiSha256Hex());
  const std::string next = absl::StrCat("sha256:", Leaf().SpkiSha256Hex());
  OutboundTlsCheck check = Pin({current, next});
  ExpectOk(
      check.Evaluate(Handshake(SelfSigned(), client.get()), "mx.partner.example", "p.example"));
  ExpectOk(check.Evaluate(Handshake(Leaf(), client.get()), "mx.partner.example", "p.example"));
  ExpectFail(check.Evaluate(Handshake(Wildcard(), client.get()), "mx.partner.example", "p.example"),
             kTlsrptPinMismatch);
}

TEST(OutboundTlsCheckTest, CreateRejectsBadPins) {
  EXPECT_TRUE(absl::IsInvalidArgument(
      OutboundTlsCheck::Create({.mode = config::v1::OUTBOUND_TLS_MODE_PIN}).status()));
  for (const char* pin : {"", "sha256:", "sha1:00", "sha256:abc",
                          "sha256:zz00000000000000000000000000000000000000000000000000000000000000",
                          "00000000000000000000000000000000000000000000000000000000000000000000"}) {
    SCOPED_TRACE(pin);
    EXPECT_TRUE(absl::IsInvalidArgument(OutboundTlsCheck::ValidatePin(pin)));
    EXPECT_TRUE(absl::IsInvalidArgument(
        OutboundTlsCheck::Create({.mode = config::v1::OUTBOUND_TLS_MODE_PIN, .pins = {pin}})
            .status()));
  }
  EXPECT_TRUE(OutboundTlsCheck::ValidatePin(absl::StrCat("sha256:", std::string(64, 'a'))).ok());
}

// --- protocol version ---

TEST(OutboundTlsCheckTest, ServerBelowMinimumVersion) {
  auto server = MakeServer(Leaf());
  SSL_CTX_set_max_proto_version(server->get(), TLS1_2_VERSION);
  auto client = MakeClient(
      {.min_version = TlsVersion::kTls13, .verify_peer = true, .ca_file = Ca().cert_file});
  Connection c = Connect(server.get(), client.get(), "mx.partner.example");
  ASSERT_EQ(c.client_result, HandshakeResult::kFailed);
  OutboundTlsFacts facts = OutboundTlsFacts::FromSession(*c.client);
  EXPECT_FALSE(facts.established);
  EXPECT_TRUE(facts.version_mismatch);
  for (OutboundTlsCheck check : {MakeCheck({.mode = config::v1::OUTBOUND_TLS_MODE_REQUIRE,
                                .min_version = config::v1::TLS_VERSION_1_3}),
                                 MakeCheck({.mode = config::v1::OUTBOUND_TLS_MODE_VERIFY,
                                 .min_version = config::v1::TLS_VERSION_1_3}),
                                 Pin({absl::StrCat("sha256:", Leaf().DerSha256Hex())})}) {
    ExpectFail(check.Evaluate(facts, "mx.partner.example", "partner.example"),
               kTlsrptProtocolVersionTooLow);
  }
  // Opportunistic delivery falls back to plaintext instead.
  OutboundTlsVerdict v = MakeCheck({}).Evaluate(facts, "mx.partner.example", "partner.example");
  ExpectOk(v);
  EXPECT_THAT(v.diagnostic, HasSubstr("plaintext"));
}

TEST(OutboundTlsCheckTest, EstablishedBelowPolicyMinimum) {
  // The context allows 1.2; the policy for this destination wants 1.3.
  auto server = MakeServer(Leaf());
  SSL_CTX_set_max_proto_version(server->get(), TLS1_2_VERSION);
  auto client = MakeVerifyingClient();
  Connection c = Connect(server.get(), client.get(), "mx.partner.example");
  ASSERT_TRUE(c.done());
  OutboundTlsFacts facts = OutboundTlsFacts::FromSession(*c.client);
  EXPECT_EQ(facts.version, "TLSv1.2");
  ExpectFail(MakeCheck({.mode = config::v1::OUTBOUND_TLS_MODE_VERIFY,
                        .min_version = config::v1::TLS_VERSION_1_3})
                 .Evaluate(facts, "mx.partner.example", "partner.example"),
             kTlsrptProtocolVersionTooLow);
  ExpectOk(Verify().Evaluate(facts, "mx.partner.example", "partner.example"));
}

// --- require, opportunistic, none ---

TEST(OutboundTlsCheckTest, OpportunisticAndRequireAcceptSelfSigned) {
  auto client = MakeVerifyingClient();  // even with a verdict on record
  OutboundTlsFacts facts = Handshake(SelfSigned(), client.get(), "mx.elsewhere.example");
  ASSERT_TRUE(facts.established);
  EXPECT_NE(facts.verify_result, std::optional<int>(X509_V_OK));
  for (OutboundTlsMode mode :
       {config::v1::OUTBOUND_TLS_MODE_OPPORTUNISTIC, config::v1::OUTBOUND_TLS_MODE_REQUIRE,
        config::v1::OUTBOUND_TLS_MODE_NONE}) {
    SCOPED_TRACE(mode);
    OutboundTlsVerdict v =
        MakeCheck({.mode = mode}).Evaluate(facts, "mx.elsewhere.example", "elsewhere.example");
    ExpectOk(v);
  }
  // Testing mode: the same facts, judged by the real mode, for the log.
  ExpectFail(Verify().Evaluate(facts, "mx.elsewhere.example", "elsewhere.example"),
             kTlsrptCertificateNotTrusted);
}

TEST(OutboundTlsCheckTest, NoStarttlsAndFailedHandshakes) {
  OutboundTlsFacts no_starttls{.starttls_offered = false};
  OutboundTlsFacts failed{.failure_reason = "no shared cipher"};
  for (OutboundTlsMode mode :
       {config::v1::OUTBOUND_TLS_MODE_REQUIRE, config::v1::OUTBOUND_TLS_MODE_VERIFY,
        config::v1::OUTBOUND_TLS_MODE_PIN}) {
    SCOPED_TRACE(mode);
    OutboundTlsCheck check =
        MakeCheck({.mode = mode, .pins = {absl::StrCat("sha256:", Leaf().DerSha256Hex())}});
    ExpectFail(check.Evaluate(no_starttls, "mx.partner.example", "partner.example"),
               kTlsrptStarttlsNotSupported);
    OutboundTlsVerdict v = check.Evaluate(failed, "mx.partner.example", "partner.example");
    ExpectFail(v, kTlsrptValidationFailure);
    EXPECT_THAT(v.diagnostic, HasSubstr("no shared cipher"));
  }
  for (OutboundTlsMode mode :
       {config::v1::OUTBOUND_TLS_MODE_OPPORTUNISTIC, config::v1::OUTBOUND_TLS_MODE_NONE}) {
    ExpectOk(MakeCheck({.mode = mode}).Evaluate(no_starttls, "mx.partner.example", "p.example"));
    ExpectOk(MakeCheck({.mode = mode}).Evaluate(failed, "mx.partner.example", "p.example"));
  }
}

TEST(OutboundTlsCheckTest, ResultTypesForVerifyErrors) {
  EXPECT_STREQ(OutboundTlsCheck::ResultTypeForVerifyError(X509_V_ERR_CERT_HAS_EXPIRED),
               kTlsrptCertificateExpired);
  EXPECT_STREQ(
      OutboundTlsCheck::ResultTypeForVerifyError(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY),
      kTlsrptCertificateNotTrusted);
  EXPECT_STREQ(OutboundTlsCheck::ResultTypeForVerifyError(X509_V_ERR_CERT_SIGNATURE_FAILURE),
               kTlsrptValidationFailure);
}

}  // namespace
}  // namespace postern::engine::tls_test
