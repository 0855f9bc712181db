#include "queue/queue_id.h"

#include <cstdint>
#include <set>
#include <string>

#include "gtest/gtest.h"

namespace postern::queue {
namespace {

// A clock the test moves by hand.
struct FakeClock {
  int64_t now = 0x0005F3A1B2C3D4;
  QueueIdGenerator::Clock AsClock() {
    return [this] { return now; };
  }
};

TEST(QueueIdTest, FormatIsTimeThenShardInUpperHex) {
  FakeClock clock;
  QueueIdGenerator gen(3, clock.AsClock());
  EXPECT_EQ(gen.Next(), "0005F3A1B2C3D403");
  clock.now = 0;
  QueueIdGenerator zero(0xAB, clock.AsClock());
  EXPECT_EQ(zero.Next(), "00000000000000AB");
}

TEST(QueueIdTest, RealClockIdsAreValidAndFixedLength) {
  QueueIdGenerator gen(255);
  for (int i = 0; i < 1000; ++i) {
    std::string id = gen.Next();
    ASSERT_EQ(id.size(), QueueIdGenerator::kLength);
    ASSERT_TRUE(QueueIdGenerator::IsValid(id)) << id;
    ASSERT_EQ(id.substr(14), "FF");
  }
}

TEST(QueueIdTest, StrictlyIncreasingWhenClockStandsStillOrStepsBack) {
  FakeClock clock;
  QueueIdGenerator gen(1, clock.AsClock());
  std::string prev = gen.Next();
  for (int i = 0; i < 100; ++i) {
    if (i == 50) clock.now -= 1000000;  // wall clock steps back one second
    std::string id = gen.Next();
    ASSERT_LT(prev, id);
    prev = id;
  }
  // Ran ahead of the clock by one microsecond per id.
  int64_t micros = 0;
  uint32_t shard = 0;
  ASSERT_TRUE(QueueIdGenerator::Parse(prev, &micros, &shard));
  EXPECT_EQ(micros, 0x0005F3A1B2C3D4 + 100);
  EXPECT_EQ(shard, 1u);
}

TEST(QueueIdTest, FollowsTheClockWhenItMovesForward) {
  FakeClock clock;
  QueueIdGenerator gen(7, clock.AsClock());
  gen.Next();
  clock.now += 5000;
  int64_t micros = 0;
  uint32_t shard = 0;
  ASSERT_TRUE(QueueIdGenerator::Parse(gen.Next(), &micros, &shard));
  EXPECT_EQ(micros, clock.now);
}

TEST(QueueIdTest, TwoShardsNeverCollideEvenOnTheSameClock) {
  FakeClock clock;
  QueueIdGenerator a(0, clock.AsClock());
  QueueIdGenerator b(1, clock.AsClock());
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    if (i % 10 == 0) ++clock.now;
    ASSERT_TRUE(seen.insert(a.Next()).second);
    ASSERT_TRUE(seen.insert(b.Next()).second);
  }
  EXPECT_EQ(seen.size(), 2000u);
}

TEST(QueueIdTest, AdvancePastSurvivesAClockStepBackAcrossRestart) {
  FakeClock clock;
  std::string last;
  {
    QueueIdGenerator before(2, clock.AsClock());
    for (int i = 0; i < 10; ++i) last = before.Next();
  }
  clock.now -= 60 * 1000000;  // restarted with the clock a minute behind
  QueueIdGenerator after(2, clock.AsClock());
  after.AdvancePast(last);
  EXPECT_GT(after.Next(), last);

  // Another shard's id in the same microsecond with a larger suffix
  // (an adopted shard directory) is passed as well.
  QueueIdGenerator low(0, clock.AsClock());
  low.AdvancePast("0005F3A1B2C3D4FF");
  EXPECT_GT(low.Next(), "0005F3A1B2C3D4FF");
}

TEST(QueueIdTest, AdvancePastNeverMovesBackAndIgnoresGarbage) {
  FakeClock clock;
  QueueIdGenerator gen(4, clock.AsClock());
  std::string first = gen.Next();
  gen.AdvancePast(
      "00000000000001"
      "04");  // older: no effect
  gen.AdvancePast("not an id");
  gen.AdvancePast("");
  gen.AdvancePast("FFFFFFFFFFFFFFFFFF");  // too long
  std::string second = gen.Next();
  EXPECT_GT(second, first);
  int64_t micros = 0;
  uint32_t shard = 0;
  ASSERT_TRUE(QueueIdGenerator::Parse(second, &micros, &shard));
  EXPECT_EQ(micros, clock.now + 1);
}

TEST(QueueIdTest, IsValidRejectsWrongLengthAndCharacters) {
  EXPECT_TRUE(QueueIdGenerator::IsValid("0005F3A1B2C3D403"));
  EXPECT_FALSE(QueueIdGenerator::IsValid("0005f3a1b2c3d403"));  // lower case
  EXPECT_FALSE(QueueIdGenerator::IsValid("0005F3A1B2C3D40"));
  EXPECT_FALSE(QueueIdGenerator::IsValid("0005F3A1B2C3D4033"));
  EXPECT_FALSE(QueueIdGenerator::IsValid("0005F3A1B2C3D4G3"));
  EXPECT_FALSE(QueueIdGenerator::IsValid(""));
}

TEST(QueueIdTest, SortsByTimeBeforeShard) {
  FakeClock clock;
  QueueIdGenerator high(0xFE, clock.AsClock());
  std::string early = high.Next();
  ++clock.now;
  QueueIdGenerator low(0x01, clock.AsClock());
  EXPECT_LT(early, low.Next());
}

TEST(QueueIdDeathTest, ShardAboveLimitAborts) { EXPECT_DEATH(QueueIdGenerator(256), "exceeds"); }

}  // namespace
}  // namespace postern::queue
