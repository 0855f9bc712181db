// Watches: history then live, exactly once and in order, prefixes, cancel,
// compaction.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "control/policy_store/embedded_policy_store.h"
#include "control/policy_store/policy_store.h"
#include "control/policy_store/test_support.h"
#include "gtest/gtest.h"

namespace postern::control {
namespace {

using ::postern::control::testing::Apply;
using ::postern::control::testing::FakeClock;
using ::postern::control::testing::FreshDir;
using ::postern::control::testing::Put;
using ::postern::control::testing::TestOptions;
using ::postern::control::testing::WatchRecorder;

std::vector<int64_t> Sequence(int64_t first, int64_t last) {
  std::vector<int64_t> v;
  for (int64_t i = first; i <= last; ++i) v.push_back(i);
  return v;
}

class WatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshDir();
    Open();
  }
  void Open(EmbeddedPolicyStoreOptions options) {
    store_.reset();
    auto store = EmbeddedPolicyStore::Open(dir_, std::move(options));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  void Open() { Open(TestOptions(&clock_)); }

  FakeClock clock_;
  std::string dir_;
  std::unique_ptr<EmbeddedPolicyStore> store_;
};

TEST_F(WatchTest, FromZeroGetsTheWholeHistoryThenLiveEvents) {
  ASSERT_TRUE(Put(*store_, "a", "1").ok());
  ASSERT_TRUE(Apply(*store_, {TxnOp::Put("b", "2"), TxnOp::Put("c", "3")}).ok());
  ASSERT_TRUE(Apply(*store_, {TxnOp::Delete("a")}).ok());
  WatchRecorder recorder;
  auto id = store_->Watch(KeySelector::Prefix(""), 0, recorder.Callback());
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(recorder.WaitFor(3));
  ASSERT_TRUE(Put(*store_, "d", "4").ok());
  ASSERT_TRUE(recorder.WaitFor(4));
  auto responses = recorder.responses();
  ASSERT_EQ(responses.size(), 4u);
  EXPECT_EQ(recorder.revisions(), Sequence(1, 4));

  ASSERT_EQ(responses[0].events.size(), 1u);
  EXPECT_EQ(responses[0].events[0].type(), v1::EVENT_TYPE_PUT);
  EXPECT_EQ(responses[0].events[0].kv().key(), "a");
  EXPECT_EQ(responses[0].events[0].kv().value(), "1");
  EXPECT_FALSE(responses[0].events[0].has_prev_kv());
  ASSERT_EQ(responses[1].events.size(), 2u);  // one revision, both keys, key order
  EXPECT_EQ(responses[1].events[0].kv().key(), "b");
  EXPECT_EQ(responses[1].events[1].kv().key(), "c");
  ASSERT_EQ(responses[2].events.size(), 1u);
  EXPECT_EQ(responses[2].events[0].type(), v1::EVENT_TYPE_DELETE);
  EXPECT_EQ(responses[2].events[0].kv().key(), "a");
  EXPECT_EQ(responses[2].events[0].kv().mod_revision(), 3);
  EXPECT_EQ(responses[2].events[0].prev_kv().value(), "1");
  EXPECT_EQ(responses[3].events[0].kv().key(), "d");
  for (const auto& r : responses) EXPECT_TRUE(r.status.ok());
  store_->CancelWatch(*id);
}

TEST_F(WatchTest, FromTheMiddleOfHistory) {
  for (int i = 1; i <= 10; ++i) ASSERT_TRUE(Put(*store_, "k", std::to_string(i)).ok());
  WatchRecorder recorder;
  ASSERT_TRUE(store_->Watch(KeySelector::Key("k"), 6, recorder.Callback()).ok());
  ASSERT_TRUE(recorder.WaitFor(4));
  ASSERT_TRUE(Put(*store_, "k", "11").ok());
  ASSERT_TRUE(recorder.WaitFor(5));
  EXPECT_EQ(recorder.revisions(), Sequence(7, 11));
  EXPECT_EQ(recorder.responses()[0].events[0].kv().value(), "7");
  EXPECT_EQ(recorder.responses()[0].events[0].prev_kv().value(), "6");
}

TEST_F(WatchTest, ListThenWatchSeesOnlyWhatComesNext) {
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(Put(*store_, "k", std::to_string(i)).ok());
  auto list = store_->Range({KeySelector::Prefix(""), 0, 0});
  ASSERT_TRUE(list.ok());
  WatchRecorder recorder;
  ASSERT_TRUE(store_->Watch(KeySelector::Prefix(""), list->revision, recorder.Callback()).ok());
  ASSERT_TRUE(Put(*store_, "k", "4").ok());
  ASSERT_TRUE(recorder.WaitFor(1));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(recorder.revisions(), std::vector<int64_t>{4});
}

TEST_F(WatchTest, FutureRevisionWaitsForIt) {
  ASSERT_TRUE(Put(*store_, "k", "1").ok());
  WatchRecorder recorder;
  ASSERT_TRUE(store_->Watch(KeySelector::Prefix(""), 2, recorder.Callback()).ok());
  ASSERT_TRUE(Put(*store_, "k", "2").ok());
  ASSERT_TRUE(Put(*store_, "k", "3").ok());
  ASSERT_TRUE(recorder.WaitFor(1));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(recorder.revisions(), std::vector<int64_t>{3});
}

TEST_F(WatchTest, PrefixSelectsEventsAndSkipsOtherRevisions) {
  ASSERT_TRUE(Apply(*store_, {TxnOp::Put("policy/a", "1"), TxnOp::Put("status/x", "1")}).ok());
  ASSERT_TRUE(Put(*store_, "status/x", "2").ok());  // revision 2: nothing under policy/
  ASSERT_TRUE(Put(*store_, "policy/b", "1").ok());
  WatchRecorder recorder;
  ASSERT_TRUE(store_->Watch(KeySelector::Prefix("policy/"), 0, recorder.Callback()).ok());
  ASSERT_TRUE(recorder.WaitFor(2));
  ASSERT_TRUE(Apply(*store_, {TxnOp::DeletePrefix("")}).ok());
  ASSERT_TRUE(recorder.WaitFor(3));
  auto responses = recorder.responses();
  EXPECT_EQ(recorder.revisions(), (std::vector<int64_t>{1, 3, 4}));
  ASSERT_EQ(responses[0].events.size(), 1u);  // status/x filtered out
  EXPECT_EQ(responses[0].events[0].kv().key(), "policy/a");
  ASSERT_EQ(responses[2].events.size(), 2u);
  EXPECT_EQ(responses[2].events[0].type(), v1::EVENT_TYPE_DELETE);
}

// Watches started at random moments while a writer commits: each sees every
// revision after its start exactly once, in order, history and live alike.
TEST_F(WatchTest, ExactlyOnceInOrderWhileCommitsRace) {
  EmbeddedPolicyStoreOptions options = TestOptions(&clock_);
  options.watch_cache_revisions = 8;  // most catch-ups read the log on disk
  Open(options);
  constexpr int kRevisions = 150;
  std::atomic<int64_t> committed{0};
  std::thread writer([&] {
    for (int i = 1; i <= kRevisions; ++i) {
      auto rev = Put(*store_, "k/" + std::to_string(i % 5), std::to_string(i));
      ASSERT_TRUE(rev.ok()) << rev.status();
      committed.store(*rev);
    }
  });
  std::vector<std::unique_ptr<WatchRecorder>> recorders;
  std::vector<int64_t> starts;
  while (committed.load() < kRevisions && recorders.size() < 30) {
    const int64_t after = committed.load();
    recorders.push_back(std::make_unique<WatchRecorder>());
    starts.push_back(after);
    ASSERT_TRUE(store_->Watch(KeySelector::Prefix("k/"), after, recorders.back()->Callback()).ok());
    absl::SleepFor(absl::Milliseconds(3));
  }
  writer.join();
  ASSERT_FALSE(recorders.empty());
  for (size_t i = 0; i < recorders.size(); ++i) {
    const size_t want = static_cast<size_t>(kRevisions - starts[i]);
    ASSERT_TRUE(recorders[i]->WaitFor(want, absl::Seconds(30))) << "watch " << i;
    absl::SleepFor(absl::Milliseconds(10));
    EXPECT_EQ(recorders[i]->revisions(), Sequence(starts[i] + 1, kRevisions)) << "watch " << i;
  }
}

TEST_F(WatchTest, CancelStopsDelivery) {
  WatchRecorder recorder;
  auto id = store_->Watch(KeySelector::Prefix(""), 0, recorder.Callback());
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(Put(*store_, "k", "1").ok());
  ASSERT_TRUE(recorder.WaitFor(1));
  store_->CancelWatch(*id);
  ASSERT_TRUE(Put(*store_, "k", "2").ok());
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(recorder.revisions(), std::vector<int64_t>{1});
  store_->CancelWatch(*id);  // twice: ignored
  store_->CancelWatch(12345);
}

TEST_F(WatchTest, CancelWaitsForARunningCallback) {
  absl::Notification entered, release;
  std::atomic<bool> returned{false};
  auto id = store_->Watch(KeySelector::Prefix(""), 0, [&](const WatchResponse&) {
    entered.Notify();
    release.WaitForNotification();
    returned.store(true);
  });
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(Put(*store_, "k", "1").ok());
  entered.WaitForNotification();
  std::thread releaser([&] {
    absl::SleepFor(absl::Milliseconds(50));
    release.Notify();
  });
  store_->CancelWatch(*id);
  EXPECT_TRUE(returned.load());
  releaser.join();
}

TEST_F(WatchTest, CallbackMayCancelItselfAndCallTheStore) {
  std::atomic<int> calls{0};
  WatchId self = 0;
  absl::Notification done;
  absl::Mutex mu;
  auto id = store_->Watch(KeySelector::Prefix(""), 0, [&](const WatchResponse& response) {
    ++calls;
    auto range = store_->Range({KeySelector::Prefix(""), response.revision, 0});
    EXPECT_TRUE(range.ok()) << range.status();
    absl::MutexLock lock(&mu);
    store_->CancelWatch(self);
    done.Notify();
  });
  ASSERT_TRUE(id.ok());
  {
    absl::MutexLock lock(&mu);
    self = *id;
  }
  ASSERT_TRUE(Put(*store_, "k", "1").ok());
  ASSERT_TRUE(Put(*store_, "k", "2").ok());
  done.WaitForNotification();
  ASSERT_TRUE(Put(*store_, "k", "3").ok());
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(WatchTest, FromACompactedRevisionFails) {
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(Put(*store_, "k", std::to_string(i)).ok());
  ASSERT_TRUE(store_->Compact(3).ok());
  WatchRecorder recorder;
  auto refused = store_->Watch(KeySelector::Prefix(""), 2, recorder.Callback());
  EXPECT_TRUE(IsCompacted(refused.status())) << refused.status();
  EXPECT_TRUE(IsCompacted(store_->Watch(KeySelector::Prefix(""), 0, recorder.Callback()).status()));
  // From the compact revision on, it works.
  ASSERT_TRUE(store_->Watch(KeySelector::Prefix(""), 3, recorder.Callback()).ok());
  ASSERT_TRUE(recorder.WaitFor(2));
  EXPECT_EQ(recorder.revisions(), (std::vector<int64_t>{4, 5}));
}

TEST_F(WatchTest, WatchBehindACompactionEndsWithCompacted) {
  ASSERT_TRUE(Put(*store_, "k", "1").ok());
  absl::Notification entered, release;
  WatchRecorder recorder;
  WatchCallback record = recorder.Callback();
  auto id = store_->Watch(KeySelector::Prefix(""), 0, [&](const WatchResponse& response) {
    record(response);
    if (response.revision == 1) {
      entered.Notify();
      release.WaitForNotification();
    }
  });
  ASSERT_TRUE(id.ok());
  entered.WaitForNotification();  // the watch is stuck in revision 1
  for (int i = 2; i <= 300; ++i) ASSERT_TRUE(Put(*store_, "k", std::to_string(i)).ok());
  ASSERT_TRUE(store_->Compact(299).ok());
  release.Notify();
  // It gets what it had already read, then the end.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  std::vector<WatchResponse> responses;
  do {
    responses = recorder.responses();
    if (!responses.back().status.ok()) break;
    absl::SleepFor(absl::Milliseconds(5));
  } while (absl::Now() < deadline);
  ASSERT_FALSE(responses.back().status.ok());
  EXPECT_TRUE(IsCompacted(responses.back().status)) << responses.back().status;
  for (size_t i = 0; i + 1 < responses.size(); ++i) {
    EXPECT_EQ(responses[i].revision, static_cast<int64_t>(i + 1));
  }
  // It is gone: cancelling is a no-op, new commits reach nobody.
  store_->CancelWatch(*id);
}

TEST_F(WatchTest, HistorySurvivesReopen) {
  for (int i = 1; i <= 4; ++i) ASSERT_TRUE(Put(*store_, "k", std::to_string(i)).ok());
  Open();
  WatchRecorder recorder;
  ASSERT_TRUE(store_->Watch(KeySelector::Prefix(""), 1, recorder.Callback()).ok());
  ASSERT_TRUE(Put(*store_, "k", "5").ok());
  ASSERT_TRUE(recorder.WaitFor(4));
  EXPECT_EQ(recorder.revisions(), Sequence(2, 5));
}

TEST_F(WatchTest, BadArguments) {
  EXPECT_TRUE(absl::IsInvalidArgument(
      store_->Watch(KeySelector::Prefix(""), -1, [](const WatchResponse&) {}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(store_->Watch(KeySelector::Prefix(""), 0, nullptr).status()));
}

TEST_F(WatchTest, ClosingTheStoreWithWatchesIsClean) {
  WatchRecorder recorder;
  ASSERT_TRUE(store_->Watch(KeySelector::Prefix(""), 0, recorder.Callback()).ok());
  for (int i = 1; i <= 20; ++i) ASSERT_TRUE(Put(*store_, "k", std::to_string(i)).ok());
  store_.reset();
  const size_t seen = recorder.responses().size();
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(recorder.responses().size(), seen);
}

}  // namespace
}  // namespace postern::control
