#include "queue/shard_adoption.h"

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "queue/spool_store.h"

namespace postern::queue {
namespace {

std::string Id(uint64_t n, int shard) {
  return absl::StrFormat("%014X%02X", 0x0005F3A1B2C3D4 + n, shard);
}

SpoolRecord MakeRecord(uint64_t n, int shard) {
  SpoolRecord r;
  r.envelope.set_queue_id(Id(n, shard));
  r.envelope.set_sender("sender@example.org");
  r.envelope.add_recipients()->set_address("rcpt@example.net");
  r.body = std::string(100 + n, static_cast<char>('a' + n % 26));
  r.envelope.set_body_size(r.body.size());
  return r;
}

std::string TestDir(const std::string& leaf) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(tmp == nullptr ? "/tmp" : tmp) + "/" +
                          ::testing::UnitTest::GetInstance()->current_test_info()->name() + "/" +
                          leaf;
  std::filesystem::remove_all(dir);
  return dir;
}

int64_t Count(SpoolStore* store) {
  int64_t n = 0;
  EXPECT_TRUE(store
                  ->ForEachEnvelope([&](const v1::Envelope&) {
                    ++n;
                    return absl::OkStatus();
                  })
                  .ok());
  return n;
}

TEST(ShardAdoptionTest, MovesEveryMessageAndEmptiesTheOldSpool) {
  const std::string mine = TestDir("spool/0");
  const std::string orphan = TestDir("spool/1");
  auto into = SpoolStore::Open(mine, SpoolOptions{});
  ASSERT_TRUE(into.ok()) << into.status();
  {
    auto other = SpoolStore::Open(orphan, SpoolOptions{});
    ASSERT_TRUE(other.ok()) << other.status();
    std::vector<SpoolRecord> records;
    for (uint64_t n = 0; n < 1200; ++n) records.push_back(MakeRecord(n, 1));  // > one batch
    ASSERT_TRUE((*other)->WriteBatch(records).ok());
  }
  auto moved = AdoptShardSpool(into->get(), orphan);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(*moved, 1200);
  EXPECT_EQ(Count(into->get()), 1200);
  auto body = (*into)->ReadBody(Id(7, 1));
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(*body, MakeRecord(7, 1).body);
  auto other = SpoolStore::Open(orphan, SpoolOptions{});
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(Count(other->get()), 0);
}

// A crash after the copy and before the removal leaves a message in both
// spools: adopting again must not duplicate it, and must empty the old one.
TEST(ShardAdoptionTest, AMessageAlreadyCopiedIsNotCopiedTwice) {
  const std::string mine = TestDir("spool/0");
  const std::string orphan = TestDir("spool/1");
  auto into = SpoolStore::Open(mine, SpoolOptions{});
  ASSERT_TRUE(into.ok());
  ASSERT_TRUE((*into)->WriteBatch({MakeRecord(1, 1)}).ok());
  {
    auto other = SpoolStore::Open(orphan, SpoolOptions{});
    ASSERT_TRUE(other.ok());
    ASSERT_TRUE((*other)->WriteBatch({MakeRecord(1, 1), MakeRecord(2, 1)}).ok());
  }
  auto moved = AdoptShardSpool(into->get(), orphan);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(*moved, 2);
  EXPECT_EQ(Count(into->get()), 2);
}

TEST(ShardAdoptionTest, ADirectoryWithoutASpoolMovesNothing) {
  auto into = SpoolStore::Open(TestDir("spool/0"), SpoolOptions{});
  ASSERT_TRUE(into.ok());
  auto moved = AdoptShardSpool(into->get(), TestDir("spool/9"));
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(*moved, 0);
}

}  // namespace
}  // namespace postern::queue
