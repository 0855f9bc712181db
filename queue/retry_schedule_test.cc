#include "queue/retry_schedule.h"

#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace postern::queue {
namespace {

// A generator that returns one fixed value: pins the jitter to an end of its
// range.
struct FixedBits {
  using result_type = uint64_t;
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return std::numeric_limits<uint64_t>::max(); }
  result_type operator()() { return value; }
  uint64_t value;
};

TEST(RetryScheduleTest, DefaultsAndLastStepRepeated) {
  RetrySchedule s({}, /*jitter=*/0.0);
  std::mt19937_64 rng(1);
  const std::vector<absl::Duration> want = {absl::Minutes(1), absl::Minutes(5), absl::Minutes(15),
                                            absl::Minutes(30), absl::Hours(1)};
  EXPECT_EQ(s.steps(), want);
  for (uint32_t n = 1; n <= 5; ++n) {
    EXPECT_EQ(s.Step(n), want[n - 1]) << n;
    EXPECT_EQ(s.Delay(n, rng), want[n - 1]) << n;
  }
  EXPECT_EQ(s.Delay(6, rng), absl::Hours(1));
  EXPECT_EQ(s.Delay(1000, rng), absl::Hours(1));
  EXPECT_EQ(s.Delay(std::numeric_limits<uint32_t>::max(), rng), absl::Hours(1));
  EXPECT_EQ(s.Delay(0, rng), absl::Minutes(1));  // nothing tried yet: first step

  EXPECT_EQ(s.max_queue_lifetime(), absl::Hours(120));
  EXPECT_EQ(s.tls_failure_max_defer(), absl::Hours(24));
  EXPECT_EQ(s.delay_warning(), absl::ZeroDuration());
  EXPECT_DOUBLE_EQ(RetrySchedule().jitter(), 0.1);
}

TEST(RetryScheduleTest, FromEmptyConfigTakesDefaults) {
  RetrySchedule s = RetrySchedule::FromConfig(config::v1::Delivery());
  EXPECT_EQ(s.steps(), RetrySchedule::DefaultSteps());
  EXPECT_EQ(s.max_queue_lifetime(), absl::Hours(120));
  EXPECT_EQ(s.tls_failure_max_defer(), absl::Hours(24));
  EXPECT_EQ(s.delay_warning(), absl::ZeroDuration());
  EXPECT_DOUBLE_EQ(s.jitter(), RetrySchedule::kDefaultJitter);
}

TEST(RetryScheduleTest, FromConfigUsesItsValues) {
  config::v1::Delivery d;
  d.add_retry_schedule()->set_seconds(10);
  auto* two = d.add_retry_schedule();
  two->set_seconds(120);
  two->set_nanos(500'000'000);
  d.mutable_max_queue_lifetime()->set_seconds(48 * 3600);
  d.mutable_tls_failure_max_defer()->set_seconds(6 * 3600);

  RetrySchedule s = RetrySchedule::FromConfig(d, /*jitter=*/0.0);
  std::mt19937_64 rng(1);
  EXPECT_EQ(s.Delay(1, rng), absl::Seconds(10));
  EXPECT_EQ(s.Delay(2, rng), absl::Milliseconds(120'500));
  EXPECT_EQ(s.Delay(3, rng), absl::Milliseconds(120'500));
  EXPECT_EQ(s.max_queue_lifetime(), absl::Hours(48));
  EXPECT_EQ(s.tls_failure_max_defer(), absl::Hours(6));
}

TEST(RetryScheduleTest, JitterStaysInBoundsAndSpreads) {
  RetrySchedule s;  // defaults, jitter 0.1
  std::mt19937_64 rng(20240601);
  const absl::Duration lo = absl::Minutes(54), hi = absl::Minutes(66);
  std::set<int64_t> distinct;
  absl::Duration min = absl::InfiniteDuration(), max = -absl::InfiniteDuration();
  for (int i = 0; i < 2000; ++i) {
    absl::Duration d = s.Delay(7, rng);  // past the list: 1h +- 10%
    ASSERT_GE(d, lo) << i;
    ASSERT_LE(d, hi) << i;
    distinct.insert(absl::ToInt64Nanoseconds(d));
    min = std::min(min, d);
    max = std::max(max, d);
  }
  // A burst of deferrals does not come back in lockstep...
  EXPECT_GT(distinct.size(), 1990u);
  // ...and the draws use the whole range, not a corner of it.
  EXPECT_LT(min, absl::Minutes(55));
  EXPECT_GT(max, absl::Minutes(65));
}

TEST(RetryScheduleTest, JitterEndsOfRange) {
  RetrySchedule s({absl::Seconds(100)}, /*jitter=*/0.2);
  FixedBits zero{0};
  EXPECT_EQ(s.Delay(1, zero), absl::Seconds(80));
  FixedBits top{std::numeric_limits<uint64_t>::max()};
  absl::Duration d = s.Delay(1, top);
  EXPECT_LE(d, absl::Seconds(120));
  EXPECT_GT(d, absl::Seconds(119.999));
  FixedBits middle{uint64_t{1} << 63};
  EXPECT_EQ(s.Delay(1, middle), absl::Seconds(100));
}

TEST(RetryScheduleTest, SameSeedSameDelays) {
  RetrySchedule s;
  std::mt19937_64 a(7), b(7);
  for (uint32_t n = 1; n < 10; ++n) EXPECT_EQ(s.Delay(n, a), s.Delay(n, b));
}

TEST(RetryScheduleTest, LimitsCanBeSet) {
  RetrySchedule s;
  s.set_max_queue_lifetime(absl::Hours(5));
  s.set_tls_failure_max_defer(absl::Hours(2));
  s.set_delay_warning(absl::Hours(4));
  EXPECT_EQ(s.max_queue_lifetime(), absl::Hours(5));
  EXPECT_EQ(s.tls_failure_max_defer(), absl::Hours(2));
  EXPECT_EQ(s.delay_warning(), absl::Hours(4));
}

}  // namespace
}  // namespace postern::queue
