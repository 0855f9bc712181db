// A full disk (or a failing one) refuses the change with a clear error and
// leaves the revision, the keys, the log and the audit trail as they were,
// in memory and after a reopen. The store recovers once there is space.
#include <rocksdb/env.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "control/policy_store/embedded_policy_store.h"
#include "control/policy_store/policy_store.h"
#include "control/policy_store/test_support.h"
#include "gtest/gtest.h"
#include "queue/fault_injection_fs.h"

namespace postern::control {
namespace {

using ::postern::control::testing::FakeClock;
using ::postern::control::testing::FreshDir;
using ::postern::control::testing::PairsAt;
using ::postern::control::testing::Put;
using ::postern::control::testing::TestAudit;
using ::postern::control::testing::TestOptions;
using ::postern::control::testing::WatchRecorder;
using Fault = ::postern::queue::FaultInjectionFileSystem::Fault;
using Pairs = std::vector<std::pair<std::string, std::string>>;

struct FaultCase {
  const char* name;
  Fault fault;
  bool on_sync;  // else on the WAL append
  absl::StatusCode expected;
};

class DiskFullTest : public ::testing::TestWithParam<FaultCase> {
 protected:
  void SetUp() override {
    dir_ = FreshDir();
    fs_ = std::make_shared<queue::FaultInjectionFileSystem>();
    env_ = rocksdb::NewCompositeEnv(fs_);
    Reopen();
  }
  void Reopen() {
    store_.reset();
    EmbeddedPolicyStoreOptions options = TestOptions(&clock_);
    options.env = env_.get();
    auto store = EmbeddedPolicyStore::Open(dir_, options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  void SetFault(Fault fault) {
    if (GetParam().on_sync) {
      fs_->SetSyncFault(fault);
    } else {
      fs_->SetAppendFault(fault);
    }
  }
  // Retries while the store waits to reopen after the fault (kUnavailable).
  absl::StatusOr<int64_t> PutWhenRecovered(const std::string& key, const std::string& value) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    absl::StatusOr<int64_t> result;
    do {
      result = Put(*store_, key, value);
      if (!absl::IsUnavailable(result.status())) return result;
      absl::SleepFor(absl::Milliseconds(5));
    } while (absl::Now() < deadline);
    return result;
  }

  FakeClock clock_;
  std::string dir_;
  std::shared_ptr<queue::FaultInjectionFileSystem> fs_;
  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<EmbeddedPolicyStore> store_;
};

TEST_P(DiskFullTest, FailedTxnChangesNothing) {
  const FaultCase& c = GetParam();
  ASSERT_TRUE(Put(*store_, "policy/a", "1").ok());
  ASSERT_TRUE(Put(*store_, "policy/b", "2").ok());
  const int64_t lease = store_->GrantLease(absl::Seconds(60))->id;
  WatchRecorder recorder;
  ASSERT_TRUE(store_->Watch(KeySelector::Prefix(""), 2, recorder.Callback()).ok());
  const Pairs before = {{"policy/a", "1"}, {"policy/b", "2"}};

  SetFault(c.fault);
  TxnRequest request;
  request.ops = {TxnOp::Put("policy/a", "changed"), TxnOp::Delete("policy/b"),
                 TxnOp::Put("policy/c", "new")};
  request.audit = TestAudit("doomed");
  auto result = store_->Txn(request);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), c.expected) << result.status();
  EXPECT_NE(result.status().message().find("policy store"), absl::string_view::npos);

  // Nothing changed, and while the fault lasts nothing can (never a false OK).
  EXPECT_EQ(store_->Info()->revision, 2);
  EXPECT_EQ(PairsAt(*store_, ""), before);
  EXPECT_EQ(store_->History(10)->size(), 2u);
  EXPECT_FALSE(Put(*store_, "policy/d", "x").ok());
  absl::SleepFor(absl::Milliseconds(20));  // past min_reopen_interval: reopens, fails again
  EXPECT_FALSE(Put(*store_, "policy/d", "x").ok());
  EXPECT_FALSE(store_->GrantLease(absl::Seconds(5)).ok());
  EXPECT_FALSE(store_->RevokeLease(lease, TestAudit()).ok());
  auto info = store_->Info();
  EXPECT_TRUE(info.ok() || absl::IsUnavailable(info.status())) << info.status();
  if (info.ok() && !c.on_sync) {
    // (After a failed fsync, a reopen may already have brought back batches
    // in doubt; see below.)
    EXPECT_EQ(info->revision, 2);
  }

  SetFault(Fault::kNone);
  auto next = PutWhenRecovered("policy/e", "after");
  ASSERT_TRUE(next.ok()) << next.status();
  const int64_t revision = *next;
  const bool came_back = store_->Get("policy/c").ok();
  if (!c.on_sync) {
    // A failed append never comes back: the store is exactly as before.
    EXPECT_FALSE(came_back);
    EXPECT_EQ(revision, 3);
    EXPECT_EQ(PairsAt(*store_, ""),
              (Pairs{{"policy/a", "1"}, {"policy/b", "2"}, {"policy/e", "after"}}));
    EXPECT_TRUE(store_->LeaseTimeToLive(lease).ok());
  } else {
    // After a failed fsync every batch written during the fault is in doubt
    // (FORMAT.md): it may come back at the reopen, but only whole, as the
    // next revision with its audit record.
    EXPECT_GE(revision, 3);
    EXPECT_EQ(store_->Get("policy/a")->value() == "changed", came_back);
    EXPECT_EQ(store_->Get("policy/b").ok(), !came_back);
  }
  // The counter, the audit trail and the log agree.
  auto history = store_->History(0);
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), static_cast<size_t>(revision));
  EXPECT_EQ((*history)[0].revision(), revision);
  EXPECT_EQ(store_->Get("policy/e")->mod_revision(), revision);
  // The watch saw exactly what is on disk, each revision once.
  ASSERT_TRUE(recorder.WaitFor(static_cast<size_t>(revision - 2)));
  absl::SleepFor(absl::Milliseconds(20));
  std::vector<int64_t> want_revisions;
  for (int64_t r = 3; r <= revision; ++r) want_revisions.push_back(r);
  EXPECT_EQ(recorder.revisions(), want_revisions);

  const Pairs contents = PairsAt(*store_, "");
  Reopen();
  EXPECT_EQ(store_->Info()->revision, revision);
  EXPECT_EQ(PairsAt(*store_, ""), contents);
  auto reopened_history = store_->History(0);
  ASSERT_TRUE(reopened_history.ok());
  ASSERT_EQ(reopened_history->size(), history->size());
  for (size_t i = 0; i < history->size(); ++i) {
    EXPECT_EQ((*reopened_history)[i].SerializeAsString(), (*history)[i].SerializeAsString());
  }
  if (!c.on_sync) {
    EXPECT_TRUE(store_->LeaseTimeToLive(lease).ok());
  }
}

INSTANTIATE_TEST_SUITE_P(
    Faults, DiskFullTest,
    ::testing::Values(
        FaultCase{"AppendNoSpace", Fault::kNoSpace, false, absl::StatusCode::kResourceExhausted},
        FaultCase{"AppendTornNoSpace", Fault::kTornNoSpace, false,
                  absl::StatusCode::kResourceExhausted},
        FaultCase{"AppendIOError", Fault::kIOError, false, absl::StatusCode::kUnavailable},
        FaultCase{"SyncNoSpace", Fault::kNoSpace, true, absl::StatusCode::kResourceExhausted}),
    [](const ::testing::TestParamInfo<FaultCase>& info) { return info.param.name; });

}  // namespace
}  // namespace postern::control
