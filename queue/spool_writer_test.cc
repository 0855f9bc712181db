#include "queue/spool_writer.h"

#include <poll.h>
#include <rocksdb/env.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "queue/fault_injection_fs.h"
#include "queue/spool_store.h"

namespace postern::queue {
namespace {

using Fault = FaultInjectionFileSystem::Fault;

std::string Id(uint64_t n) { return absl::StrFormat("%014X%02X", 0x0005F3A1B2C3D4 + n, 1); }

SpoolRecord MakeRecord(uint64_t n, size_t body_size = 1024) {
  SpoolRecord r;
  r.envelope.set_queue_id(Id(n));
  r.envelope.set_sender("sender@example.org");
  r.envelope.add_recipients()->set_address("rcpt@example.net");
  r.body = std::string(body_size, static_cast<char>('a' + n % 26));
  r.envelope.set_body_size(r.body.size());
  return r;
}

bool Readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN) != 0;
}

// Does what the event loop does: wait for the eventfd, read its counter,
// take the completions. Stops at `n` completions or after 30 s.
std::vector<SpoolCompletion> Collect(SpoolWriter* writer, size_t n) {
  std::vector<SpoolCompletion> all;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (all.size() < n && absl::Now() < deadline) {
    if (!Readable(writer->completion_eventfd(), 100)) continue;
    uint64_t counter = 0;
    EXPECT_EQ(read(writer->completion_eventfd(), &counter, sizeof(counter)),
              static_cast<ssize_t>(sizeof(counter)));
    EXPECT_GE(counter, 1u);
    for (auto& c : writer->TakeCompletions()) all.push_back(std::move(c));
  }
  return all;
}

class SpoolWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    ASSERT_NE(tmp, nullptr);
    dir_ = std::string(tmp) + "/" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name() + "/spool/1";
    std::filesystem::remove_all(dir_);
    fs_ = std::make_shared<FaultInjectionFileSystem>();
    env_ = rocksdb::NewCompositeEnv(fs_);
    SpoolOptions options;
    options.env = env_.get();
    options.min_reopen_interval = absl::Milliseconds(20);
    auto store = SpoolStore::Open(dir_, options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  std::string dir_;
  std::shared_ptr<FaultInjectionFileSystem> fs_;
  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<SpoolStore> store_;
};

TEST_F(SpoolWriterTest, ConcurrentSubmitsAllCompleteOkExactlyOnce) {
  SpoolWriter writer(store_.get());
  constexpr int kThreads = 4;
  constexpr int kPerThread = 250;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&writer, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const uint64_t n = static_cast<uint64_t>(t) * kPerThread + i;
        writer.Submit(n, MakeRecord(n));
      }
    });
  }
  std::vector<SpoolCompletion> done = Collect(&writer, kThreads * kPerThread);
  for (auto& t : threads) t.join();

  ASSERT_EQ(done.size(), static_cast<size_t>(kThreads * kPerThread));
  std::map<uint64_t, int> seen;
  for (const auto& c : done) {
    EXPECT_TRUE(c.status.ok()) << c.token << ": " << c.status;
    EXPECT_GE(c.batch_size, 1u);
    EXPECT_GT(c.latency, absl::ZeroDuration());
    ++seen[c.token];
  }
  ASSERT_EQ(seen.size(), static_cast<size_t>(kThreads * kPerThread));
  for (const auto& [token, count] : seen) EXPECT_EQ(count, 1) << token;
  // Durable means readable: every body is in the store.
  for (uint64_t n = 0; n < kThreads * kPerThread; ++n) {
    auto body = store_->ReadBody(Id(n));
    ASSERT_TRUE(body.ok()) << Id(n) << ": " << body.status();
    EXPECT_EQ(*body, MakeRecord(n).body);
  }
  EXPECT_EQ(writer.pending_bytes(), 0u);
}

TEST_F(SpoolWriterTest, SubmitsDuringASyncShareTheNextOne) {
  SpoolWriter writer(store_.get());
  fs_->HoldSyncs();
  writer.Submit(0, MakeRecord(0));
  ASSERT_TRUE(fs_->AwaitHeldSyncs(1, absl::Seconds(30)));  // the writer is inside fsync
  const int64_t syncs_before = fs_->wal_syncs();
  for (uint64_t n = 1; n <= 10; ++n) writer.Submit(n, MakeRecord(n));
  EXPECT_GT(writer.pending_bytes(), 10u * 1024);
  fs_->ReleaseSyncs();

  std::vector<SpoolCompletion> done = Collect(&writer, 11);
  ASSERT_EQ(done.size(), 11u);
  for (const auto& c : done) {
    EXPECT_TRUE(c.status.ok()) << c.status;
    EXPECT_EQ(c.batch_size, c.token == 0 ? 1u : 10u) << c.token;
  }
  // One fsync for the first message, one for the ten that waited.
  EXPECT_EQ(fs_->wal_syncs() - syncs_before, 2);
}

// Delivery results ask for no sync of their own: a batch of only those is
// written (readable at once) without an fsync; the next batch of new mail
// syncs the WAL for both.
TEST_F(SpoolWriterTest, UnsyncedMutationsAreWrittenAndSyncedWithTheNextNewMail) {
  SpoolWriter writer(store_.get());
  writer.Submit(1, MakeRecord(1));
  ASSERT_EQ(Collect(&writer, 1).size(), 1u);

  const int64_t syncs_before = fs_->wal_syncs();
  SpoolMutation removal;
  removal.envelope.set_queue_id(Id(1));
  removal.remove = true;
  removal.sync = false;
  writer.SubmitMutation(2, removal);
  std::vector<SpoolCompletion> done = Collect(&writer, 1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(done[0].status.ok()) << done[0].status;
  EXPECT_TRUE(absl::IsNotFound(store_->ReadEnvelope(Id(1)).status())) << "written at once";
  EXPECT_EQ(fs_->wal_syncs(), syncs_before) << "no fsync of its own";

  writer.Submit(3, MakeRecord(3));
  ASSERT_EQ(Collect(&writer, 1).size(), 1u);
  EXPECT_EQ(fs_->wal_syncs(), syncs_before + 1) << "new mail is always synced";

  SpoolMutation synced = removal;
  synced.envelope.set_queue_id(Id(3));
  synced.sync = true;  // the default: admin actions
  writer.SubmitMutation(4, synced);
  ASSERT_EQ(Collect(&writer, 1).size(), 1u);
  EXPECT_EQ(fs_->wal_syncs(), syncs_before + 2);
}

TEST_F(SpoolWriterTest, MaxBatchBytesBoundsABatch) {
  SpoolWriterOptions options;
  options.max_batch_bytes = 10 * 1024;  // two 4 KB messages fit, three do not
  SpoolWriter writer(store_.get(), options);
  fs_->HoldSyncs();
  writer.Submit(0, MakeRecord(0, 4096));
  ASSERT_TRUE(fs_->AwaitHeldSyncs(1, absl::Seconds(30)));
  for (uint64_t n = 1; n <= 6; ++n) writer.Submit(n, MakeRecord(n, 4096));
  fs_->ReleaseSyncs();
  std::vector<SpoolCompletion> done = Collect(&writer, 7);
  ASSERT_EQ(done.size(), 7u);
  for (const auto& c : done) {
    EXPECT_TRUE(c.status.ok());
    if (c.token > 0) {
      EXPECT_EQ(c.batch_size, 2u) << c.token;
    }
  }
  // A message larger than the bound still goes, alone.
  writer.Submit(100, MakeRecord(100, 64 * 1024));
  done = Collect(&writer, 1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(done[0].status.ok());
  EXPECT_EQ(done[0].batch_size, 1u);
}

TEST_F(SpoolWriterTest, EventfdSignalsCompletionsAndOnlyThen) {
  SpoolWriter writer(store_.get());
  EXPECT_FALSE(Readable(writer.completion_eventfd(), 0));
  EXPECT_TRUE(writer.TakeCompletions().empty());

  writer.Submit(42, MakeRecord(42));
  ASSERT_TRUE(Readable(writer.completion_eventfd(), 30000));
  uint64_t counter = 0;
  ASSERT_EQ(read(writer.completion_eventfd(), &counter, sizeof(counter)), 8);
  EXPECT_EQ(counter, 1u);
  std::vector<SpoolCompletion> done = writer.TakeCompletions();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].token, 42u);
  EXPECT_TRUE(done[0].status.ok());
  EXPECT_EQ(done[0].batch_size, 1u);
  // Drained: nonblocking, nothing more to read.
  EXPECT_FALSE(Readable(writer.completion_eventfd(), 0));
  EXPECT_LT(read(writer.completion_eventfd(), &counter, sizeof(counter)), 0);
}

TEST_F(SpoolWriterTest, StopWritesEverythingPendingThenRefuses) {
  auto writer = std::make_unique<SpoolWriter>(store_.get());
  fs_->HoldSyncs();
  writer->Submit(0, MakeRecord(0));
  ASSERT_TRUE(fs_->AwaitHeldSyncs(1, absl::Seconds(30)));
  for (uint64_t n = 1; n <= 50; ++n) writer->Submit(n, MakeRecord(n));

  std::thread stopper([&writer] { writer->Stop(); });
  fs_->ReleaseSyncs();
  stopper.join();

  // Stop returned: every completion is already posted.
  std::vector<SpoolCompletion> done = writer->TakeCompletions();
  ASSERT_EQ(done.size(), 51u);
  for (const auto& c : done) EXPECT_TRUE(c.status.ok()) << c.token;
  for (uint64_t n = 0; n <= 50; ++n) EXPECT_TRUE(store_->ReadEnvelope(Id(n)).ok()) << n;

  writer->Submit(99, MakeRecord(99));
  done = writer->TakeCompletions();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].token, 99u);
  EXPECT_TRUE(absl::IsFailedPrecondition(done[0].status));
  EXPECT_TRUE(absl::IsNotFound(store_->ReadEnvelope(Id(99)).status()));
  writer->Stop();  // idempotent
  writer.reset();
}

TEST_F(SpoolWriterTest, MalformedRecordFailsAloneNotItsBatch) {
  SpoolWriter writer(store_.get());
  SpoolRecord bad = MakeRecord(2);
  bad.envelope.set_body_size(1);
  writer.Submit(1, MakeRecord(1));
  writer.Submit(2, std::move(bad));
  writer.Submit(3, MakeRecord(3));
  std::vector<SpoolCompletion> done = Collect(&writer, 3);
  ASSERT_EQ(done.size(), 3u);
  for (const auto& c : done) {
    if (c.token == 2) {
      EXPECT_TRUE(absl::IsInvalidArgument(c.status)) << c.status;
      EXPECT_EQ(c.record.envelope.queue_id(), Id(2)) << "a refused record comes back too";
    } else {
      EXPECT_TRUE(c.status.ok()) << c.status;
    }
  }
  EXPECT_TRUE(absl::IsNotFound(store_->ReadEnvelope(Id(2)).status()));
}

// The loop keeps fresh mail for delivery from what comes back, so each
// record must return to its own token, whatever else shared the batch.
TEST_F(SpoolWriterTest, EachRecordComesBackWithItsOwnCompletion) {
  SpoolWriter writer(store_.get());
  SpoolMutation removal;
  removal.envelope.set_queue_id(Id(1));
  removal.remove = true;
  for (uint64_t n = 1; n <= 20; ++n) {
    writer.Submit(n, MakeRecord(n, 100 + n));
    if (n == 10) writer.SubmitMutation(100, removal, {MakeRecord(50)});
    if (n == 15) writer.SubmitBarrier(101);
  }
  std::vector<SpoolCompletion> done = Collect(&writer, 22);
  ASSERT_EQ(done.size(), 22u);
  for (const SpoolCompletion& c : done) {
    ASSERT_TRUE(c.status.ok()) << c.status;
    if (c.token >= 100) {
      EXPECT_TRUE(c.record.envelope.queue_id().empty()) << "no record for a mutation or barrier";
      continue;
    }
    EXPECT_EQ(c.record.envelope.queue_id(), Id(c.token));
    EXPECT_EQ(c.record.body, MakeRecord(c.token, 100 + c.token).body);
  }
}

TEST_F(SpoolWriterTest, WriteErrorFailsTheWholeBatchAndWriterRecovers) {
  SpoolWriter writer(store_.get());
  fs_->SetAppendFault(Fault::kNoSpace);
  for (uint64_t n = 0; n < 5; ++n) writer.Submit(n, MakeRecord(n));
  std::vector<SpoolCompletion> done = Collect(&writer, 5);
  ASSERT_EQ(done.size(), 5u);
  // The first batch fails with ENOSPC; later ones may instead wait for the
  // store's rate-limited reopen.
  for (const auto& c : done) {
    EXPECT_TRUE(absl::IsResourceExhausted(c.status) || absl::IsUnavailable(c.status)) << c.status;
  }
  EXPECT_TRUE(absl::IsResourceExhausted(done[0].status)) << done[0].status;
  for (uint64_t n = 0; n < 5; ++n) EXPECT_FALSE(store_->ReadEnvelope(Id(n)).ok());

  fs_->SetAppendFault(Fault::kNone);
  // RocksDB may still be recovering (kUnavailable); the loop would answer
  // 452 and the client retry. Retry the same way until it is durable.
  absl::Status last;
  for (uint64_t n = 10; n < 10000; ++n) {
    writer.Submit(n, MakeRecord(n));
    done = Collect(&writer, 1);
    ASSERT_EQ(done.size(), 1u);
    last = done[0].status;
    if (last.ok()) break;
    EXPECT_TRUE(absl::IsUnavailable(last)) << last;
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_TRUE(last.ok()) << last;
}

}  // namespace
}  // namespace postern::queue
