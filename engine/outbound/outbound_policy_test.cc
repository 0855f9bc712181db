#include "engine/outbound/outbound_policy.h"

#include <gtest/gtest.h>

namespace postern::engine {
namespace {

config::v1::Config Config() {
  config::v1::Config c;
  c.mutable_delivery()->set_default_tls(config::v1::OUTBOUND_TLS_MODE_OPPORTUNISTIC);
  auto* p = c.add_partners();
  p->set_domain(".partner.example");
  p->mutable_outbound()->set_tls(config::v1::OUTBOUND_TLS_MODE_REQUIRE);
  p = c.add_partners();
  p->set_domain("mx.partner.example");
  p->mutable_outbound()->set_tls(config::v1::OUTBOUND_TLS_MODE_PIN);
  p->mutable_outbound()->add_pins("sha256:" + std::string(64, 'a'));
  p->mutable_outbound()->set_min_version(config::v1::TLS_VERSION_1_3);
  p = c.add_partners();
  p->set_domain("bank.example");
  p->mutable_outbound()->set_tls(config::v1::OUTBOUND_TLS_MODE_VERIFY);
  p->mutable_outbound()->set_testing(true);
  p->mutable_outbound()->add_match("mx.bank.example");
  p = c.add_partners();
  p->set_domain("inbound-only.example");  // no outbound section: default applies
  p->mutable_inbound()->set_require_tls(true);
  return c;
}

TEST(OutboundPolicyTest, MostSpecificPartnerWinsAndOthersGetTheDefault) {
  auto policy = OutboundPolicy::FromConfig(Config());
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ(policy->For("other.example").mode, config::v1::OUTBOUND_TLS_MODE_OPPORTUNISTIC);
  EXPECT_EQ(policy->For("other.example").partner, "");
  EXPECT_EQ(policy->For("partner.example").mode, config::v1::OUTBOUND_TLS_MODE_REQUIRE);
  EXPECT_EQ(policy->For("a.partner.example").mode, config::v1::OUTBOUND_TLS_MODE_REQUIRE);
  const DomainTlsPolicy& pinned = policy->For("mx.partner.example");
  EXPECT_EQ(pinned.mode, config::v1::OUTBOUND_TLS_MODE_PIN);
  EXPECT_EQ(pinned.min_version, config::v1::TLS_VERSION_1_3);
  EXPECT_TRUE(pinned.enforced());
  EXPECT_EQ(policy->For("inbound-only.example").mode, config::v1::OUTBOUND_TLS_MODE_OPPORTUNISTIC);
  EXPECT_EQ(policy->For("notpartner.example").partner, "") << "suffix match is per label";
}

TEST(OutboundPolicyTest, TestingModeRunsOpportunisticButKeepsTheEnforcedMode) {
  auto policy = OutboundPolicy::FromConfig(Config());
  ASSERT_TRUE(policy.ok());
  const DomainTlsPolicy& bank = policy->For("bank.example");
  EXPECT_EQ(bank.mode, config::v1::OUTBOUND_TLS_MODE_VERIFY);
  EXPECT_TRUE(bank.testing);
  EXPECT_EQ(bank.effective_mode(), config::v1::OUTBOUND_TLS_MODE_OPPORTUNISTIC);
  EXPECT_EQ(bank.match, std::vector<std::string>{"mx.bank.example"});
}

TEST(OutboundPolicyTest, PinModeWithoutPinsIsRefused) {
  config::v1::Config c;
  auto* p = c.add_partners();
  p->set_domain("x.example");
  p->mutable_outbound()->set_tls(config::v1::OUTBOUND_TLS_MODE_PIN);
  EXPECT_FALSE(OutboundPolicy::FromConfig(c).ok());
}

TEST(OutboundPolicyTest, DefaultCanBeEnforced) {
  config::v1::Config c;
  c.mutable_delivery()->set_default_tls(config::v1::OUTBOUND_TLS_MODE_REQUIRE);
  auto policy = OutboundPolicy::FromConfig(c);
  ASSERT_TRUE(policy.ok());
  EXPECT_TRUE(policy->For("anyone.example").enforced());
  EXPECT_EQ(OutboundTlsModeName(policy->For("anyone.example").mode), "require");
}

}  // namespace
}  // namespace postern::engine
