#include "common/proto_time.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace postern {
namespace {

google::protobuf::Timestamp Ts(int64_t seconds, int32_t nanos) {
  google::protobuf::Timestamp t;
  t.set_seconds(seconds);
  t.set_nanos(nanos);
  return t;
}

TEST(ProtoTime, FromProtoTimestamp) {
  EXPECT_EQ(FromProtoTimestamp(google::protobuf::Timestamp()), absl::UnixEpoch());
  EXPECT_EQ(FromProtoTimestamp(Ts(1795423258, 123456789)),
            absl::FromUnixSeconds(1795423258) + absl::Nanoseconds(123456789));
  EXPECT_EQ(FromProtoTimestamp(Ts(-1, 999999999)), absl::FromUnixNanos(-1));
  // Year 9999, past what int64 nanoseconds reach.
  EXPECT_EQ(FromProtoTimestamp(Ts(253402300799, 0)), absl::FromUnixSeconds(253402300799));
}

TEST(ProtoTime, ToProtoTimestampIsNormalized) {
  google::protobuf::Timestamp t =
      ToProtoTimestamp(absl::FromUnixSeconds(1795423258) + absl::Nanoseconds(123456789));
  EXPECT_EQ(t.seconds(), 1795423258);
  EXPECT_EQ(t.nanos(), 123456789);

  t = ToProtoTimestamp(absl::FromUnixNanos(-1));  // before the epoch: nanos stay >= 0
  EXPECT_EQ(t.seconds(), -1);
  EXPECT_EQ(t.nanos(), 999999999);

  t = ToProtoTimestamp(absl::UnixEpoch());
  EXPECT_EQ(t.seconds(), 0);
  EXPECT_EQ(t.nanos(), 0);
}

TEST(ProtoTime, RoundTripsToTheNanosecond) {
  for (int64_t ns : {int64_t{0}, int64_t{1}, int64_t{-1}, int64_t{1795423258123456789},
                     int64_t{-1795423258123456789}, int64_t{999999999}, int64_t{-1000000000}}) {
    const absl::Time t = absl::FromUnixNanos(ns);
    EXPECT_EQ(FromProtoTimestamp(ToProtoTimestamp(t)), t) << ns;
  }
}

TEST(ProtoTime, FarInstantsRoundTripExactly) {
  // Past what int64 nanoseconds hold (1677-2262), within a Timestamp's range.
  for (const absl::Time t : {absl::FromUnixSeconds(253402300799) + absl::Nanoseconds(999999999),
                             absl::FromUnixSeconds(10'000'000'000) + absl::Nanoseconds(5),
                             absl::FromUnixSeconds(-62135596800),
                             absl::FromUnixSeconds(-10'000'000'000) - absl::Nanoseconds(5)}) {
    const google::protobuf::Timestamp ts = ToProtoTimestamp(t);
    EXPECT_GE(ts.nanos(), 0);
    EXPECT_LT(ts.nanos(), 1000000000);
    EXPECT_EQ(FromProtoTimestamp(ts), t) << t;
  }
}

TEST(ProtoTime, ToProtoTimestampClampsToTheTimestampRange) {
  google::protobuf::Timestamp t = ToProtoTimestamp(absl::InfiniteFuture());
  EXPECT_EQ(t.seconds(), 253402300799);  // 9999-12-31T23:59:59Z
  EXPECT_EQ(t.nanos(), 999999999);
  EXPECT_EQ(ToProtoTimestamp(absl::FromUnixSeconds(int64_t{1} << 40)).seconds(), 253402300799);

  t = ToProtoTimestamp(absl::InfinitePast());
  EXPECT_EQ(t.seconds(), -62135596800);  // 0001-01-01T00:00:00Z
  EXPECT_EQ(t.nanos(), 0);
  EXPECT_EQ(ToProtoTimestamp(absl::FromUnixSeconds(-(int64_t{1} << 40))).seconds(), -62135596800);
}

}  // namespace
}  // namespace postern
