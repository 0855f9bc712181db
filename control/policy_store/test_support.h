// Helpers for the policy store's tests: a fresh directory under
// TEST_TMPDIR, a settable clock, one-line transactions, a watch recorder.
#ifndef POSTERN_CONTROL_POLICY_STORE_TEST_SUPPORT_H_
#define POSTERN_CONTROL_POLICY_STORE_TEST_SUPPORT_H_

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "control/policy_store/embedded_policy_store.h"
#include "control/policy_store/policy_store.h"
#include "gtest/gtest.h"

namespace postern::control::testing {

// A fresh, empty directory named after the running test.
inline std::string FreshDir(const std::string& suffix = "control") {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = std::string(tmp != nullptr ? tmp : "/tmp") + "/" +
                    ::testing::UnitTest::GetInstance()->current_test_info()->test_suite_name() +
                    "." + ::testing::UnitTest::GetInstance()->current_test_info()->name() + "/" +
                    suffix;
  std::filesystem::remove_all(dir);
  return dir;
}

class FakeClock {
 public:
  absl::Time Now() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_) = absl::FromUnixSeconds(1700000000);
};

// Options with both clocks on `clock` and no lease timer thread.
inline EmbeddedPolicyStoreOptions TestOptions(FakeClock* clock) {
  EmbeddedPolicyStoreOptions options;
  options.wall_clock = [clock] { return clock->Now(); };
  options.lease_clock = [clock] { return clock->Now(); };
  options.lease_check_interval = absl::ZeroDuration();
  options.min_reopen_interval = absl::Milliseconds(10);
  return options;
}

inline AuditInfo TestAudit(std::string summary = "test") {
  return {"alice", "unix:/run/postern/admin.sock", std::move(summary)};
}

// One transaction without compares; the new revision (or the current one
// when nothing changed).
inline absl::StatusOr<int64_t> Apply(PolicyStore& store, std::vector<TxnOp> ops,
                                     std::vector<Compare> compares = {}) {
  TxnRequest request;
  request.ops = std::move(ops);
  request.compares = std::move(compares);
  request.audit = TestAudit();
  absl::StatusOr<TxnResult> result = store.Txn(request);
  if (!result.ok()) return result.status();
  if (!result->succeeded) return result->ToStatus();
  return result->revision;
}

inline absl::StatusOr<int64_t> Put(PolicyStore& store, std::string key, std::string value,
                                   int64_t lease = 0) {
  return Apply(store, {TxnOp::Put(std::move(key), std::move(value), lease)});
}

// key=value pairs of a Range, for compact assertions.
inline std::vector<std::pair<std::string, std::string>> Pairs(const RangeResult& result) {
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const auto& kv : result.kvs) pairs.emplace_back(kv.key(), kv.value());
  return pairs;
}

inline std::vector<std::pair<std::string, std::string>> PairsAt(PolicyStore& store,
                                                                const std::string& prefix,
                                                                int64_t revision = 0) {
  absl::StatusOr<RangeResult> result = store.Range({KeySelector::Prefix(prefix), revision, 0});
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? Pairs(*result) : std::vector<std::pair<std::string, std::string>>{};
}

// Collects what a watch delivers; thread-safe.
// A store in a fresh directory on a fake clock, reopened at will.
class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshDir();
    Reopen();
  }

  void Reopen() {
    store_.reset();
    auto store = EmbeddedPolicyStore::Open(dir_, TestOptions(&clock_));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  int64_t Revision() {
    auto info = store_->Info();
    EXPECT_TRUE(info.ok()) << info.status();
    return info.ok() ? info->revision : -1;
  }

  FakeClock clock_;
  std::string dir_;
  std::unique_ptr<EmbeddedPolicyStore> store_;
};

class WatchRecorder {
 public:
  WatchCallback Callback() {
    return [this](const WatchResponse& response) {
      absl::MutexLock lock(&mu_);
      responses_.push_back(response);
    };
  }
  // Waits until `n` responses arrived; false on timeout.
  bool WaitFor(size_t n, absl::Duration timeout = absl::Seconds(10)) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return responses_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  std::vector<WatchResponse> responses() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return responses_;
  }
  std::vector<int64_t> revisions() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    std::vector<int64_t> revisions;
    for (const auto& r : responses_) revisions.push_back(r.revision);
    return revisions;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<WatchResponse> responses_ ABSL_GUARDED_BY(mu_);
};

}  // namespace postern::control::testing

#endif  // POSTERN_CONTROL_POLICY_STORE_TEST_SUPPORT_H_
