#include "engine/net/connection_limiter.h"

#include <cstdint>
#include <string>

#include "gtest/gtest.h"

namespace postern::engine {
namespace {

using Admission = ConnectionLimiter::Admission;

ConnectionLimits Limits(int per_ip, int rate, int total) {
  ConnectionLimits limits;
  limits.max_per_ip = per_ip;
  limits.max_rate_per_ip = rate;
  limits.max_total = total;
  return limits;
}

TEST(ConnectionLimiterTest, NoLimitsAdmitsEverything) {
  ConnectionLimiter limiter(Limits(0, 0, 0));
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kOk);
  EXPECT_EQ(limiter.total(), 1000);
  EXPECT_EQ(limiter.connections("192.0.2.1"), 1000);
  EXPECT_EQ(limiter.tracked_addresses(), 1u);
}

TEST(ConnectionLimiterTest, PerIpConcurrency) {
  ConnectionLimiter limiter(Limits(2, 0, 0));
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kOk);
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kOk);
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kTooManyFromIp);
  // Another address has its own budget.
  EXPECT_EQ(limiter.Admit("192.0.2.2", 0), Admission::kOk);
  EXPECT_EQ(limiter.connections("192.0.2.1"), 2);
  EXPECT_EQ(limiter.total(), 3);
  limiter.Release("192.0.2.1");
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kOk);
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kTooManyFromIp);
}

TEST(ConnectionLimiterTest, TotalIsCheckedFirst) {
  ConnectionLimiter limiter(Limits(1, 0, 2));
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kOk);
  EXPECT_EQ(limiter.Admit("192.0.2.2", 0), Admission::kOk);
  EXPECT_EQ(limiter.Admit("192.0.2.3", 0), Admission::kTooManyTotal);
  // Over both limits: the worker-wide one is reported.
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kTooManyTotal);
  EXPECT_EQ(limiter.tracked_addresses(), 2u);  // refusals create nothing
  limiter.Release("192.0.2.2");
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kTooManyFromIp);
  EXPECT_EQ(limiter.Admit("192.0.2.3", 0), Admission::kOk);
}

TEST(ConnectionLimiterTest, Ipv4MappedIsTheSameHost) {
  ConnectionLimiter limiter(Limits(2, 0, 0));
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kOk);
  EXPECT_EQ(limiter.Admit("::ffff:192.0.2.1", 0), Admission::kOk);
  EXPECT_EQ(limiter.Admit("::FFFF:c000:0201", 0), Admission::kTooManyFromIp);
  // Neighbouring IPv4 addresses are separate hosts.
  EXPECT_EQ(limiter.Admit("192.0.2.2", 0), Admission::kOk);
  limiter.Release("::ffff:192.0.2.1");
  EXPECT_EQ(limiter.connections("192.0.2.1"), 1);
}

TEST(ConnectionLimiterTest, Ipv6CountsPer64) {
  ConnectionLimiter limiter(Limits(2, 0, 0));
  EXPECT_EQ(limiter.Admit("2001:db8:1:2::1", 0), Admission::kOk);
  EXPECT_EQ(limiter.Admit("2001:db8:1:2:ffff:ffff:ffff:ffff", 0), Admission::kOk);
  EXPECT_EQ(limiter.Admit("2001:db8:1:2:abcd::9", 0), Admission::kTooManyFromIp);
  // The next /64 is another client.
  EXPECT_EQ(limiter.Admit("2001:db8:1:3::1", 0), Admission::kOk);
  EXPECT_EQ(limiter.connections("2001:db8:1:2::77"), 2);
  limiter.Release("2001:db8:1:2::5");  // any address in the /64
  EXPECT_EQ(limiter.connections("2001:db8:1:2::1"), 1);
}

TEST(ConnectionLimiterTest, NonAddressTextIsItsOwnKey) {
  ConnectionLimiter limiter(Limits(1, 0, 0));
  EXPECT_EQ(limiter.Admit("unix", 0), Admission::kOk);
  EXPECT_EQ(limiter.Admit("unix", 0), Admission::kTooManyFromIp);
  EXPECT_EQ(limiter.Admit("", 0), Admission::kOk);
  EXPECT_EQ(limiter.Admit(std::string(100, 'x'), 0), Admission::kOk);
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kOk);
  limiter.Release("unix");
  limiter.Release("");
  limiter.Release(std::string(100, 'x'));
  limiter.Release("192.0.2.1");
  EXPECT_EQ(limiter.total(), 0);
  EXPECT_EQ(limiter.tracked_addresses(), 0u);
}

TEST(ConnectionLimiterTest, RateIsATokenBucket) {
  // 60 per minute: a burst of 60, then one per second.
  ConnectionLimiter limiter(Limits(0, 60, 0));
  int64_t now = 1'000'000;
  for (int i = 0; i < 60; ++i) {
    ASSERT_EQ(limiter.Admit("192.0.2.1", now), Admission::kOk) << i;
    limiter.Release("192.0.2.1");
  }
  EXPECT_EQ(limiter.Admit("192.0.2.1", now), Admission::kRateExceeded);
  EXPECT_EQ(limiter.Admit("192.0.2.1", now + 999), Admission::kRateExceeded);
  EXPECT_EQ(limiter.Admit("192.0.2.1", now + 1000), Admission::kOk);
  EXPECT_EQ(limiter.Admit("192.0.2.1", now + 1000), Admission::kRateExceeded);
  // Refused attempts cost nothing: the next token still comes a second later.
  EXPECT_EQ(limiter.Admit("192.0.2.1", now + 2000), Admission::kOk);
  // Other addresses are unaffected.
  EXPECT_EQ(limiter.Admit("192.0.2.2", now), Admission::kOk);
  // A minute restores the whole burst, and no more.
  now += 2000 + 600'000;
  for (int i = 0; i < 60; ++i) ASSERT_EQ(limiter.Admit("192.0.2.1", now), Admission::kOk) << i;
  EXPECT_EQ(limiter.Admit("192.0.2.1", now), Admission::kRateExceeded);
}

TEST(ConnectionLimiterTest, FractionalRefillIsExact) {
  // 7 per minute: one token every 8571.43 ms.
  ConnectionLimiter limiter(Limits(0, 7, 0));
  for (int i = 0; i < 7; ++i) ASSERT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kOk);
  EXPECT_EQ(limiter.Admit("192.0.2.1", 8571), Admission::kRateExceeded);
  EXPECT_EQ(limiter.Admit("192.0.2.1", 8572), Admission::kOk);
  // 7 tokens over a minute, whatever the steps.
  int admitted = 0;
  for (int64_t t = 8572; t <= 8572 + 60'000; ++t) {
    if (limiter.Admit("192.0.2.1", t) == Admission::kOk) ++admitted;
  }
  EXPECT_EQ(admitted, 7);
}

TEST(ConnectionLimiterTest, ConcurrencyIsCheckedBeforeRate) {
  ConnectionLimiter limiter(Limits(1, 2, 0));
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kOk);
  // Refused for concurrency: no token taken.
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kTooManyFromIp);
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kTooManyFromIp);
  limiter.Release("192.0.2.1");
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kOk);
  limiter.Release("192.0.2.1");
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kRateExceeded);
}

TEST(ConnectionLimiterTest, ClockSteppingBackEarnsNothing) {
  ConnectionLimiter limiter(Limits(0, 60, 0));
  for (int i = 0; i < 60; ++i) ASSERT_EQ(limiter.Admit("192.0.2.1", 100'000), Admission::kOk);
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kRateExceeded);
  EXPECT_EQ(limiter.Admit("192.0.2.1", 100'999), Admission::kRateExceeded);
  EXPECT_EQ(limiter.Admit("192.0.2.1", 101'000), Admission::kOk);
}

TEST(ConnectionLimiterTest, IdleEntriesAreDroppedWithoutRateLimit) {
  ConnectionLimiter limiter(Limits(10, 0, 0));
  for (int i = 0; i < 100; ++i) {
    const std::string ip = "10.0.0." + std::to_string(i);
    ASSERT_EQ(limiter.Admit(ip, 0), Admission::kOk);
    limiter.Release(ip);
  }
  EXPECT_EQ(limiter.tracked_addresses(), 0u);
  EXPECT_EQ(limiter.total(), 0);
}

TEST(ConnectionLimiterTest, SweepDropsRefilledEntries) {
  // 60 per minute: a token per second.
  ConnectionLimiter limiter(Limits(0, 60, 0));
  ASSERT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kOk);
  ASSERT_EQ(limiter.Admit("192.0.2.2", 0), Admission::kOk);
  ASSERT_EQ(limiter.Admit("192.0.2.3", 500), Admission::kOk);
  limiter.Release("192.0.2.1");
  limiter.Release("192.0.2.3");
  // Each is a token short; 192.0.2.2 stays anyway: it has a connection open.
  EXPECT_EQ(limiter.tracked_addresses(), 3u);
  limiter.Sweep(999);
  EXPECT_EQ(limiter.tracked_addresses(), 3u);
  limiter.Sweep(1000);
  EXPECT_EQ(limiter.tracked_addresses(), 2u);
  EXPECT_EQ(limiter.connections("192.0.2.3"), 0);
  limiter.Sweep(1500);
  EXPECT_EQ(limiter.tracked_addresses(), 1u);
  EXPECT_EQ(limiter.connections("192.0.2.2"), 1);
  limiter.Sweep(10'000'000);
  EXPECT_EQ(limiter.tracked_addresses(), 1u);
  // Its bucket refilled meanwhile, so releasing it leaves nothing behind.
  limiter.Release("192.0.2.2");
  EXPECT_EQ(limiter.tracked_addresses(), 0u);
}

TEST(ConnectionLimiterTest, LongConnectionReleasedWithFullBucketIsDropped) {
  ConnectionLimiter limiter(Limits(0, 10, 0));
  ASSERT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kOk);
  // Another client's arrival tells the limiter the time.
  ASSERT_EQ(limiter.Admit("192.0.2.9", 60'000), Admission::kOk);
  limiter.Release("192.0.2.1");
  EXPECT_EQ(limiter.connections("192.0.2.1"), 0);
  EXPECT_EQ(limiter.tracked_addresses(), 1u);
}

TEST(ConnectionLimiterTest, IdleEntriesAreCapped) {
  ConnectionLimits limits = Limits(0, 1, 0);
  limits.max_tracked_addresses = 3;
  ConnectionLimiter limiter(limits);
  // Three clients with open connections and ten more that left: only the three
  // most recently idle keep their history.
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(limiter.Admit("10.1.0." + std::to_string(i), 0), Admission::kOk);
  }
  for (int i = 0; i < 10; ++i) {
    const std::string ip = "10.0.0." + std::to_string(i);
    ASSERT_EQ(limiter.Admit(ip, 0), Admission::kOk);
    limiter.Release(ip);
    EXPECT_LE(limiter.tracked_addresses(), 3u + 3u);
  }
  EXPECT_EQ(limiter.tracked_addresses(), 6u);
  // Forgotten: its next connection is admitted as a newcomer's.
  EXPECT_EQ(limiter.Admit("10.0.0.0", 0), Admission::kOk);
  // Remembered: still out of tokens.
  EXPECT_EQ(limiter.Admit("10.0.0.9", 0), Admission::kRateExceeded);
  // Connected clients are never forgotten.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limiter.connections("10.1.0." + std::to_string(i)), 1);
}

TEST(ConnectionLimiterTest, ZeroTrackedKeepsNoHistory) {
  ConnectionLimits limits = Limits(0, 1, 0);
  limits.max_tracked_addresses = 0;
  ConnectionLimiter limiter(limits);
  ASSERT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kOk);
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kRateExceeded);  // while connected
  limiter.Release("192.0.2.1");
  EXPECT_EQ(limiter.tracked_addresses(), 0u);
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kOk);
}

TEST(ConnectionLimiterTest, UnmatchedReleaseIsCountedAndHarmless) {
  ConnectionLimiter limiter(Limits(1, 0, 1));
  limiter.Release("192.0.2.1");
  EXPECT_EQ(limiter.unmatched_releases(), 1);
  EXPECT_EQ(limiter.total(), 0);
  ASSERT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kOk);
  limiter.Release("192.0.2.1");
  limiter.Release("192.0.2.1");
  EXPECT_EQ(limiter.unmatched_releases(), 2);
  EXPECT_EQ(limiter.total(), 0);
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kOk);
}

TEST(ConnectionLimiterTest, SetLimitsAppliesToNewAdmissions) {
  ConnectionLimiter limiter(Limits(3, 0, 0));
  for (int i = 0; i < 3; ++i) ASSERT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kOk);
  limiter.SetLimits(Limits(2, 0, 0));
  EXPECT_EQ(limiter.connections("192.0.2.1"), 3);  // open ones stay
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kTooManyFromIp);
  limiter.Release("192.0.2.1");
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kTooManyFromIp);
  limiter.Release("192.0.2.1");
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kOk);

  // Turning the rate limit on gives existing clients a full burst.
  limiter.SetLimits(Limits(0, 2, 0));
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kOk);
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kOk);
  EXPECT_EQ(limiter.Admit("192.0.2.1", 0), Admission::kRateExceeded);
  // A lower rate clamps the bucket to the new burst.
  ASSERT_EQ(limiter.Admit("192.0.2.5", 0), Admission::kOk);  // 1 token left of 2
  limiter.SetLimits(Limits(0, 1, 0));
  EXPECT_EQ(limiter.Admit("192.0.2.5", 0), Admission::kOk);
  EXPECT_EQ(limiter.Admit("192.0.2.5", 0), Admission::kRateExceeded);
  EXPECT_EQ(limiter.Admit("192.0.2.5", 60'000), Admission::kOk);
  EXPECT_EQ(limiter.Admit("192.0.2.5", 60'000), Admission::kRateExceeded);

  // Turning it off forgets idle entries.
  for (int i = 0; i < 3; ++i) limiter.Release("192.0.2.5");
  EXPECT_EQ(limiter.connections("192.0.2.5"), 0);
  EXPECT_EQ(limiter.tracked_addresses(), 2u);  // 192.0.2.5 kept for its history
  limiter.SetLimits(Limits(0, 0, 0));
  EXPECT_EQ(limiter.tracked_addresses(), 1u);  // 192.0.2.1, still connected
  EXPECT_EQ(limiter.unmatched_releases(), 0);
}

}  // namespace
}  // namespace postern::engine
