// PolicyService without gRPC transport: the RPC methods called directly,
// on a real embedded store, with a ConfigSink that records submissions.
#include "control/policy_service.h"

#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "control/config_loader.h"
#include "control/policy_store/embedded_policy_store.h"
#include "gtest/gtest.h"

namespace postern::control {
namespace {

class RecordingSink : public ConfigSink {
 public:
  void SubmitConfig(config::v1::Config config, uint64_t generation) override {
    submitted.push_back({std::move(config), generation});
  }
  admin::v1::Rollout WaitForConfig(uint64_t, absl::Duration) override {
    admin::v1::Rollout r;
    r.set_config_version(7);
    r.add_workers()->set_state(admin::v1::ROLLOUT_STATE_APPLIED);
    return r;
  }
  std::vector<std::pair<config::v1::Config, uint64_t>> submitted;
};

config::v1::Config File() {
  auto c = ParseConfigYaml(R"(
listeners: [{ name: mx, address: "127.0.0.1:2525" }]
partners: [{ domain: bank.example, inbound: { require_tls: true } }]
)",
                           "file.yaml");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

class PolicyServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string dir = std::string(tmp != nullptr ? tmp : "/tmp") + "/policy_service_test/" +
                      ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir);
    auto s = EmbeddedPolicyStore::Open(dir);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
    service_ = std::make_unique<PolicyService>(store_.get(), File(), "file.yaml");
    service_->set_sink(&sink_);
  }

  grpc::Status Apply(const std::string& yaml, admin::v1::PolicyChangeResponse* r,
                     bool dry_run = false, int64_t expect = 0) {
    admin::v1::ApplyPolicyRequest req;
    req.set_yaml(yaml);
    req.set_dry_run(dry_run);
    req.set_expect_revision(expect);
    return service_->ApplyPolicy(nullptr, &req, r);
  }
  int64_t Revision() { return (*store_->Info()).revision; }

  std::unique_ptr<EmbeddedPolicyStore> store_;
  RecordingSink sink_;
  std::unique_ptr<PolicyService> service_;
};

constexpr char kPartner[] =
    "partners: [{ domain: partner.example, inbound: { require_tls: true } }]";

TEST_F(PolicyServiceTest, ApplyCommitsOneRevisionAndSubmitsTheMergedConfig) {
  admin::v1::PolicyChangeResponse r;
  ASSERT_TRUE(Apply(kPartner, &r).ok());
  EXPECT_TRUE(r.committed());
  EXPECT_EQ(r.revision(), 1);
  ASSERT_EQ(r.changes_size(), 1);
  EXPECT_EQ(r.changes(0).kind(), v1::CHANGE_KIND_ADDED);
  EXPECT_EQ(r.rollout().config_version(), 7u);
  ASSERT_EQ(sink_.submitted.size(), 1u);
  EXPECT_EQ(sink_.submitted[0].second, 1u);
  ASSERT_EQ(sink_.submitted[0].first.partners_size(), 2);
  EXPECT_EQ(sink_.submitted[0].first.partners(1).domain(), "partner.example");
  auto history = store_->History(10);
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 1u);
  EXPECT_EQ((*history)[0].actor(), "local");
  EXPECT_EQ((*history)[0].summary(), "added partner partner.example");

  // The same again changes nothing and commits nothing.
  admin::v1::PolicyChangeResponse again;
  ASSERT_TRUE(Apply(kPartner, &again).ok());
  EXPECT_FALSE(again.committed());
  EXPECT_EQ(again.changes_size(), 0);
  EXPECT_EQ(Revision(), 1);
}

TEST_F(PolicyServiceTest, DryRunCommitsNothing) {
  admin::v1::PolicyChangeResponse r;
  ASSERT_TRUE(Apply(kPartner, &r, /*dry_run=*/true).ok());
  EXPECT_TRUE(r.dry_run());
  EXPECT_FALSE(r.committed());
  EXPECT_EQ(r.changes_size(), 1);
  EXPECT_EQ(Revision(), 0);
  EXPECT_TRUE(sink_.submitted.empty());
}

TEST_F(PolicyServiceTest, RefusalsCommitNothing) {
  admin::v1::PolicyChangeResponse r;
  grpc::Status st =
      Apply("partners: [{ domain: p.example, outbound: { tls: pin, pins: [\"sha256:00\"] } }]", &r);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("partners[0].outbound.pins[0]"), std::string::npos)
      << st.error_message();
  st = Apply("limits: { max_recipients: 5 }", &r);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  st = Apply("partners: [{ domain: BANK.example }]", &r);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(st.error_message().find("file.yaml"), std::string::npos);
  st = Apply(kPartner, &r, false, /*expect=*/3);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::ABORTED);
  admin::v1::DeletePartnerRequest del;
  del.set_domain("nobody.example");
  EXPECT_EQ(service_->DeletePartner(nullptr, &del, &r).error_code(), grpc::StatusCode::NOT_FOUND);
  del.set_domain("bank.example");
  EXPECT_EQ(service_->DeletePartner(nullptr, &del, &r).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Revision(), 0);
  EXPECT_TRUE(sink_.submitted.empty());
}

TEST_F(PolicyServiceTest, RollbackRestoresThePartnersOfARevision) {
  admin::v1::PolicyChangeResponse r;
  ASSERT_TRUE(Apply(kPartner, &r).ok());
  ASSERT_TRUE(Apply("partners: [{ domain: partner.example }, { domain: two.example }]", &r).ok());
  EXPECT_EQ(Revision(), 2);
  admin::v1::RollbackPolicyRequest req;
  req.set_revision(1);
  ASSERT_TRUE(service_->RollbackPolicy(nullptr, &req, &r).ok());
  EXPECT_EQ(r.revision(), 3);
  auto now = ReadStorePartners(*store_);
  ASSERT_TRUE(now.ok());
  ASSERT_EQ(now->partners.size(), 1u);
  EXPECT_TRUE(now->partners[0].partner.inbound().require_tls());
  req.set_revision(9);
  EXPECT_EQ(service_->RollbackPolicy(nullptr, &req, &r).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(sink_.submitted.back().second, 3u);  // one generation per commit
}

TEST_F(PolicyServiceTest, ReloadMergesTheNewFileWithTheStore) {
  admin::v1::PolicyChangeResponse r;
  ASSERT_TRUE(Apply(kPartner, &r).ok());
  config::v1::Config file = File();
  file.clear_partners();
  ASSERT_TRUE(service_->Reload(file).ok());
  ASSERT_EQ(sink_.submitted.size(), 2u);
  EXPECT_EQ(sink_.submitted[1].second, 2u);
  ASSERT_EQ(sink_.submitted[1].first.partners_size(), 1);
  EXPECT_EQ(sink_.submitted[1].first.partners(0).domain(), "partner.example");
  // A file that does not load is refused; nothing submitted.
  EXPECT_FALSE(service_->Reload(absl::InvalidArgumentError("bad file")).ok());
  EXPECT_EQ(sink_.submitted.size(), 2u);
}

}  // namespace
}  // namespace postern::control
