#include "engine/inbound/auth_throttle.h"

#include <cstdint>
#include <string>

#include "gtest/gtest.h"

namespace postern::engine {
namespace {

constexpr int64_t kMinute = 60 * 1000;

TEST(AuthThrottleTest, BlocksAfterFiveFailuresWithinTenMinutes) {
  AuthThrottle throttle;
  const std::string ip = "203.0.113.5";
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(throttle.Allowed(ip, i * kMinute)) << i;
    throttle.Failed(ip, i * kMinute);
  }
  EXPECT_FALSE(throttle.Allowed(ip, 5 * kMinute));
  EXPECT_FALSE(throttle.Allowed(ip, 10 * kMinute - 1));       // the first failure still counts
  EXPECT_TRUE(throttle.Allowed("203.0.113.6", 5 * kMinute));  // other addresses unaffected
  // The first failure ages out: one more try.
  EXPECT_TRUE(throttle.Allowed(ip, 10 * kMinute));
  throttle.Failed(ip, 10 * kMinute);
  EXPECT_FALSE(throttle.Allowed(ip, 10 * kMinute + 1));
  EXPECT_TRUE(throttle.Allowed(ip, 11 * kMinute));
  // Long after: everything forgotten.
  EXPECT_TRUE(throttle.Allowed(ip, 60 * kMinute));
  EXPECT_EQ(throttle.size(), 0u);
}

TEST(AuthThrottleTest, SpreadOutFailuresNeverBlock) {
  AuthThrottle throttle;
  for (int i = 0; i < 100; ++i) {
    EXPECT_TRUE(throttle.Allowed("198.51.100.1", i * 3 * kMinute)) << i;
    throttle.Failed("198.51.100.1", i * 3 * kMinute);
  }
}

TEST(AuthThrottleTest, SuccessClears) {
  AuthThrottle throttle;
  for (int i = 0; i < 5; ++i) throttle.Failed("192.0.2.1", 0);
  EXPECT_FALSE(throttle.Allowed("192.0.2.1", 1));
  throttle.Succeeded("192.0.2.1");
  EXPECT_TRUE(throttle.Allowed("192.0.2.1", 1));
  EXPECT_EQ(throttle.size(), 0u);
}

TEST(AuthThrottleTest, AddressesAreGrouped) {
  AuthThrottle throttle;
  // IPv4 and its IPv4-mapped IPv6 form are one client.
  for (int i = 0; i < 3; ++i) throttle.Failed("192.0.2.1", 0);
  for (int i = 0; i < 2; ++i) throttle.Failed("::ffff:192.0.2.1", 0);
  EXPECT_FALSE(throttle.Allowed("192.0.2.1", 1));
  EXPECT_TRUE(throttle.Allowed("192.0.2.2", 1));
  // IPv6 counts per /64.
  for (int i = 0; i < 5; ++i) {
    throttle.Failed("2001:db8:1:2::" + std::to_string(i + 1), 0);
  }
  EXPECT_FALSE(throttle.Allowed("2001:db8:1:2:ffff::9", 1));
  EXPECT_TRUE(throttle.Allowed("2001:db8:1:3::1", 1));
}

TEST(AuthThrottleTest, CustomLimits) {
  AuthThrottle throttle({.max_failures = 2, .window_ms = 1000, .max_addresses = 10});
  throttle.Failed("192.0.2.1", 0);
  EXPECT_TRUE(throttle.Allowed("192.0.2.1", 1));
  throttle.Failed("192.0.2.1", 1);
  EXPECT_FALSE(throttle.Allowed("192.0.2.1", 2));
  EXPECT_TRUE(throttle.Allowed("192.0.2.1", 1001));
}

TEST(AuthThrottleTest, MemoryIsBounded) {
  AuthThrottle throttle({.max_failures = 5, .window_ms = 10 * kMinute, .max_addresses = 100});
  for (int i = 0; i < 1000; ++i) {
    throttle.Failed("10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256), i);
    ASSERT_LE(throttle.size(), 100u);
  }
  // A blocked address survives eviction of quieter ones while it is the
  // most recent.
  for (int i = 0; i < 5; ++i) throttle.Failed("192.0.2.1", 2000);
  for (int i = 0; i < 50; ++i) throttle.Failed("10.9.0." + std::to_string(i), 1000 + i);
  EXPECT_FALSE(throttle.Allowed("192.0.2.1", 2001));
  // Expired records are dropped before anything is evicted.
  throttle.Failed("198.51.100.7", 20 * kMinute);
  EXPECT_EQ(throttle.size(), 1u);
}

}  // namespace
}  // namespace postern::engine
