#include "control/effective_config.h"

#include <cstdlib>
#include <filesystem>
#include <string>

#include "control/config_loader.h"
#include "control/policy_store/embedded_policy_store.h"
#include "gtest/gtest.h"

namespace postern::control {
namespace {

using config::v1::Config;
using config::v1::Partner;

Config FileConfig() {
  auto c = ParseConfigYaml(R"(
listeners:
  - { name: mx, address: "127.0.0.1:2525" }
delivery: { default_tls: require }
partners:
  - { domain: bank.example, inbound: { require_tls: true } }
)",
                           "test.yaml");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

Partner StorePartner(const std::string& domain) {
  Partner p;
  p.set_domain(domain);
  p.mutable_inbound()->set_require_tls(true);
  return p;
}

TEST(MergeConfig, AppendsStorePartnersAfterTheFilesWithTheFilesDefaults) {
  auto merged = MergeConfig(FileConfig(), {StorePartner("partner.example")});
  ASSERT_TRUE(merged.ok()) << merged.status();
  ASSERT_EQ(merged->partners_size(), 2);
  EXPECT_EQ(merged->partners(0).domain(), "bank.example");
  EXPECT_EQ(merged->partners(1).domain(), "partner.example");
  EXPECT_TRUE(merged->partners(1).inbound().require_tls());
  // Outbound defaults come from the file's delivery.default_tls.
  EXPECT_EQ(merged->partners(1).outbound().tls(), config::v1::OUTBOUND_TLS_MODE_REQUIRE);
}

TEST(MergeConfig, TheFileWinsOverAStorePartnerOfTheSameDomain) {
  Partner p = StorePartner("BANK.example");
  p.mutable_inbound()->set_require_tls(false);
  std::vector<std::string> shadowed;
  auto merged = MergeConfig(FileConfig(), {p, StorePartner("other.example")}, &shadowed);
  ASSERT_TRUE(merged.ok()) << merged.status();
  ASSERT_EQ(merged->partners_size(), 2);
  EXPECT_TRUE(merged->partners(0).inbound().require_tls());
  EXPECT_EQ(merged->partners(1).domain(), "other.example");
  EXPECT_EQ(shadowed, std::vector<std::string>{"BANK.example"});
}

TEST(MergeConfig, AnInvalidStorePartnerIsRefusedWithItsFieldPath) {
  Partner p = StorePartner("partner.example");
  p.mutable_outbound()->set_tls(config::v1::OUTBOUND_TLS_MODE_PIN);
  p.mutable_outbound()->add_pins("sha256:nothex");
  auto merged = MergeConfig(FileConfig(), {p});
  ASSERT_FALSE(merged.ok());
  EXPECT_EQ(merged.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(merged.status().message()).rfind("partners[1].outbound.pins[0]: ", 0), 0u)
      << merged.status();
}

TEST(MergeConfig, DuplicateStoreDomainsAreRefused) {
  auto merged = MergeConfig(FileConfig(), {StorePartner("a.example"), StorePartner("A.example")});
  ASSERT_FALSE(merged.ok());
  EXPECT_NE(std::string(merged.status().message()).find("partners[2].domain"), std::string::npos)
      << merged.status();
}

TEST(MergeConfig, ANodeNeedsAListener) {
  Config file = FileConfig();
  file.clear_listeners();
  EXPECT_FALSE(MergeConfig(file, {}).ok());
}

TEST(FileDefinesPartner, IgnoresCase) {
  EXPECT_TRUE(FileDefinesPartner(FileConfig(), "Bank.Example"));
  EXPECT_FALSE(FileDefinesPartner(FileConfig(), ".bank.example"));
}

TEST(PartnerKey, LowerCase) {
  EXPECT_EQ(PartnerKey("Partner.Example"), "/policy/partners/partner.example");
  EXPECT_EQ(PartnerKey(".sub.example"), "/policy/partners/.sub.example");
}

TEST(ParseConfigYaml, AsWrittenHasNoDefaults) {
  Config written;
  auto parsed = ParseConfigYaml(
      "partners:\n  - { domain: p.example, inbound: { require_tls: true } }\n", "policy", &written);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->partners(0).outbound().tls(), config::v1::OUTBOUND_TLS_MODE_OPPORTUNISTIC);
  ASSERT_EQ(written.partners_size(), 1);
  EXPECT_FALSE(written.partners(0).has_outbound());
  EXPECT_FALSE(written.has_node());
}

TEST(ReadStorePartners, ReadsCurrentAndPastRevisions) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = std::string(tmp != nullptr ? tmp : "/tmp") + "/effective_config_test_store";
  std::filesystem::remove_all(dir);
  auto store = EmbeddedPolicyStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status();
  TxnRequest txn;
  txn.ops.push_back(
      TxnOp::Put(PartnerKey("a.example"), StorePartner("a.example").SerializeAsString()));
  txn.ops.push_back(TxnOp::Put("/policy/other", "x"));
  txn.audit.actor = "test";
  ASSERT_TRUE((*store)->Txn(txn).ok());
  TxnRequest del;
  del.ops.push_back(TxnOp::Delete(PartnerKey("a.example")));
  del.audit.actor = "test";
  ASSERT_TRUE((*store)->Txn(del).ok());

  auto now = ReadStorePartners(**store);
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(now->revision, 2);
  EXPECT_TRUE(now->partners.empty());
  auto then = ReadStorePartners(**store, 1);
  ASSERT_TRUE(then.ok()) << then.status();
  ASSERT_EQ(then->partners.size(), 1u);
  EXPECT_EQ(then->partners[0].partner.domain(), "a.example");
  EXPECT_EQ(then->partners[0].mod_revision, 1);

  TxnRequest bad;
  bad.ops.push_back(TxnOp::Put(PartnerKey("b.example"), "\xff\xff garbage"));
  bad.audit.actor = "test";
  ASSERT_TRUE((*store)->Txn(bad).ok());
  EXPECT_EQ(ReadStorePartners(**store).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace postern::control
