#include "engine/inbound/inbound_policy.h"

#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace postern::engine {
namespace {

using ::testing::HasSubstr;

const std::string kPinA = "sha256:" + std::string(64, 'a');
const std::string kPinB = "sha256:" + std::string(64, 'B');

PartnerRule Rule(std::string domain, bool require_tls, std::vector<std::string> pins = {}) {
  PartnerRule rule;
  rule.domain = std::move(domain);
  rule.require_tls = require_tls;
  rule.pins = std::move(pins);
  return rule;
}

TEST(DomainMatchesTest, ExactAndSubdomains) {
  EXPECT_TRUE(DomainMatches("partner.example", "partner.example"));
  EXPECT_TRUE(DomainMatches("partner.example", "PARTNER.Example"));
  EXPECT_FALSE(DomainMatches("partner.example", "mx.partner.example"));
  EXPECT_FALSE(DomainMatches("partner.example", "partner.example."));
  EXPECT_TRUE(DomainMatches(".partner.example", "partner.example"));
  EXPECT_TRUE(DomainMatches(".partner.example", "a.b.Partner.example"));
  EXPECT_FALSE(DomainMatches(".partner.example", "notpartner.example"));
  EXPECT_FALSE(DomainMatches(".partner.example", ".partner.example"));
  EXPECT_FALSE(DomainMatches(".partner.example", "example"));
  EXPECT_FALSE(DomainMatches("partner.example", ""));
  EXPECT_FALSE(DomainMatches("", ""));
}

TEST(InboundPolicyTest, MatchPrefersExactThenLongestSuffix) {
  std::vector<PartnerRule> rules;
  rules.push_back(Rule(".partner.example", true));
  rules.push_back(Rule(".eu.partner.example", false, {kPinA}));
  rules.push_back(Rule("PARTNER.example", false));
  absl::StatusOr<InboundPolicy> policy = InboundPolicy::Create(std::move(rules), {});
  ASSERT_TRUE(policy.ok()) << policy.status();

  const PartnerRule* exact = policy->Match("partner.EXAMPLE");
  ASSERT_NE(exact, nullptr);
  EXPECT_EQ(exact->domain, "partner.example");  // lower-cased
  EXPECT_FALSE(exact->require_tls);

  const PartnerRule* sub = policy->Match("mx.partner.example");
  ASSERT_NE(sub, nullptr);
  EXPECT_EQ(sub->domain, ".partner.example");
  EXPECT_TRUE(sub->require_tls);

  const PartnerRule* deeper = policy->Match("a.eu.partner.example");
  ASSERT_NE(deeper, nullptr);
  EXPECT_EQ(deeper->domain, ".eu.partner.example");

  EXPECT_EQ(policy->Match("eu.partner.example")->domain, ".eu.partner.example");
  EXPECT_EQ(policy->Match("other.example"), nullptr);
  EXPECT_EQ(policy->Match(""), nullptr);
  EXPECT_TRUE(policy->wants_client_certs());
}

TEST(InboundPolicyTest, WantsClientCertsOnlyWithPins) {
  std::vector<PartnerRule> rules;
  rules.push_back(Rule("partner.example", true));
  absl::StatusOr<InboundPolicy> policy = InboundPolicy::Create(std::move(rules), {});
  ASSERT_TRUE(policy.ok());
  EXPECT_FALSE(policy->wants_client_certs());
  EXPECT_FALSE(InboundPolicy().wants_client_certs());
  EXPECT_EQ(InboundPolicy().Match("partner.example"), nullptr);
}

TEST(InboundPolicyTest, CertificatePins) {
  const PartnerRule rule = Rule("p.example", false, {kPinA, kPinB});
  EXPECT_TRUE(rule.AcceptsCertificate(std::string(64, 'a'), ""));
  EXPECT_TRUE(rule.AcceptsCertificate(std::string(64, 'A'), ""));  // case-insensitive
  EXPECT_TRUE(rule.AcceptsCertificate(std::string(64, 'f'), std::string(64, 'b')));  // SPKI
  EXPECT_FALSE(rule.AcceptsCertificate(std::string(64, 'f'), std::string(64, 'f')));
  EXPECT_FALSE(rule.AcceptsCertificate("", ""));
  EXPECT_FALSE(rule.AcceptsCertificate(std::string(63, 'a'), ""));
  EXPECT_FALSE(Rule("p.example", true).AcceptsCertificate(std::string(64, 'a'), ""));
}

TEST(InboundPolicyTest, RecipientRequiresTls) {
  absl::StatusOr<InboundPolicy> policy =
      InboundPolicy::Create({}, {"Secure.example.com", ".vault.example"});
  ASSERT_TRUE(policy.ok());
  EXPECT_TRUE(policy->RecipientRequiresTls("secure.example.com"));
  EXPECT_TRUE(policy->RecipientRequiresTls("SECURE.EXAMPLE.COM"));
  EXPECT_FALSE(policy->RecipientRequiresTls("example.com"));
  EXPECT_FALSE(policy->RecipientRequiresTls("a.secure.example.com"));
  EXPECT_TRUE(policy->RecipientRequiresTls("vault.example"));
  EXPECT_TRUE(policy->RecipientRequiresTls("x.vault.example"));
  EXPECT_FALSE(policy->RecipientRequiresTls(""));
}

TEST(InboundPolicyTest, CreateRejectsBadInput) {
  struct Case {
    std::vector<PartnerRule> rules;
    std::vector<std::string> domains;
    std::string error;
  };
  const Case cases[] = {
      {{Rule("", true)}, {}, "empty partner domain"},
      {{Rule(".", true)}, {}, "empty partner domain"},
      {{Rule("p.example", true), Rule("P.example", false)}, {}, "duplicate partner"},
      {{Rule("p.example", false, {"sha256:abc"})}, {}, "pin is not sha256"},
      {{Rule("p.example", false, {"sha1:" + std::string(64, 'a')})}, {}, "pin is not sha256"},
      {{Rule("p.example", false, {"sha256:" + std::string(64, 'g')})}, {}, "pin is not sha256"},
      {{}, {""}, "empty domain in require_tls_domains"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<InboundPolicy> policy = InboundPolicy::Create(c.rules, c.domains);
    ASSERT_FALSE(policy.ok()) << c.error;
    EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(policy.status().message()), HasSubstr(c.error));
  }
}

}  // namespace
}  // namespace postern::engine
