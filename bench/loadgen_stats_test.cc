#include "bench/loadgen_stats.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace postern::bench {
namespace {

// The exact nearest-rank percentile of `values`.
uint64_t Exact(std::vector<uint64_t> values, double p) {
  std::sort(values.begin(), values.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * values.size()));
  rank = std::clamp<size_t>(rank, 1, values.size());
  return values[rank - 1];
}

TEST(LatencyHistogramTest, EmptyReportsZero) {
  LatencyHistogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.Percentile(50), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.min(), 0u);
}

TEST(LatencyHistogramTest, SmallValuesAreExact) {
  LatencyHistogram h;
  for (uint64_t v = 1; v <= 200; ++v) h.Record(v);
  EXPECT_EQ(h.count(), 200u);
  EXPECT_EQ(h.Percentile(50), 100u);
  EXPECT_EQ(h.Percentile(90), 180u);
  EXPECT_EQ(h.Percentile(99), 198u);
  EXPECT_EQ(h.Percentile(99.9), 200u);
  EXPECT_EQ(h.Percentile(100), 200u);
  EXPECT_EQ(h.Percentile(0), 1u);
  EXPECT_EQ(h.min(), 1u);
  EXPECT_EQ(h.max(), 200u);
  EXPECT_DOUBLE_EQ(h.mean(), 100.5);
}

TEST(LatencyHistogramTest, OneToAMillionWithinBucketError) {
  LatencyHistogram h;
  std::vector<uint64_t> values;
  for (uint64_t v = 1; v <= 1000000; ++v) {
    h.Record(v);
    values.push_back(v);
  }
  for (double p : {50.0, 90.0, 99.0, 99.9, 99.99}) {
    const uint64_t exact = Exact(values, p);
    const uint64_t got = h.Percentile(p);
    EXPECT_GE(got, exact) << p;
    EXPECT_LE(got, exact + exact / 128) << p;
  }
  // 500000 falls in the bucket [499712, 501759], reported by its top.
  EXPECT_EQ(h.Percentile(50), 501759u);
  EXPECT_EQ(h.max(), 1000000u);
}

TEST(LatencyHistogramTest, SkewedRandomDataMatchesExactPercentiles) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> dist(7.0, 1.5);  // microseconds, long tail
  LatencyHistogram h;
  std::vector<uint64_t> values;
  for (int i = 0; i < 100000; ++i) {
    const uint64_t v = static_cast<uint64_t>(dist(rng));
    h.Record(v);
    values.push_back(v);
  }
  for (double p : {50.0, 90.0, 99.0, 99.9}) {
    const uint64_t exact = Exact(values, p);
    const uint64_t got = h.Percentile(p);
    EXPECT_GE(got, exact) << p;
    EXPECT_LE(got, exact + exact / 128 + 1) << p;
  }
  EXPECT_EQ(h.Percentile(100), *std::max_element(values.begin(), values.end()));
}

TEST(LatencyHistogramTest, TailIsNotHiddenByTheBulk) {
  LatencyHistogram h;
  for (int i = 0; i < 990; ++i) h.Record(1000);
  for (int i = 0; i < 10; ++i) h.Record(2000000);  // 1 % at 2 s
  EXPECT_LE(h.Percentile(99), 1000u + 1000u / 128);
  EXPECT_GE(h.Percentile(99.1), 2000000u - 2000000u / 128);
  EXPECT_EQ(h.Percentile(99.9), 2000000u);  // capped at the max seen
}

TEST(LatencyHistogramTest, BucketsAreContiguousAndCoverEverything) {
  uint64_t expected_index = 0;
  for (uint64_t v = 0; v < 70000; ++v) {
    const size_t i = LatencyHistogram::BucketIndex(v);
    ASSERT_TRUE(i == expected_index || i == expected_index + 1) << v;
    expected_index = i;
    ASSERT_GE(LatencyHistogram::BucketHighest(i), v);
    if (i > 0) {
      ASSERT_LT(LatencyHistogram::BucketHighest(i - 1), v);
    }
  }
  const size_t top = LatencyHistogram::BucketIndex(UINT64_MAX);
  EXPECT_EQ(LatencyHistogram::BucketHighest(top), UINT64_MAX);
  LatencyHistogram h;
  h.Record(UINT64_MAX);
  EXPECT_EQ(h.Percentile(50), UINT64_MAX);
}

TEST(LatencyHistogramTest, MergeAddsCounts) {
  LatencyHistogram a, b;
  for (uint64_t v = 1; v <= 100; ++v) a.Record(v);
  for (uint64_t v = 101; v <= 200; ++v) b.Record(v);
  a.Merge(b);
  EXPECT_EQ(a.count(), 200u);
  EXPECT_EQ(a.Percentile(50), 100u);
  EXPECT_EQ(a.max(), 200u);
  EXPECT_EQ(a.min(), 1u);
}

TEST(LoadgenTotalsTest, JsonCarriesCountsRatesAndPercentiles) {
  LoadgenTotals t;
  t.sent = 12;
  t.acknowledged = 10;
  t.rejected[550] = 2;
  t.recipients_rejected[550] = 1;
  t.bytes_acknowledged = 2000000;
  t.tls_handshakes = 4;
  t.resumed_sessions = 3;
  t.connection_errors["tls"] = 1;
  t.elapsed_s = 2.0;
  for (int i = 1; i <= 10; ++i) t.message.Record(i * 20);  // exact buckets
  const std::string json = t.Json();
  EXPECT_NE(json.find("\"sent\":12,\"acknowledged\":10,\"rejected\":{\"550\":2}"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"rejected_total\":2"), std::string::npos);
  EXPECT_NE(json.find("\"recipients_rejected\":{\"550\":1}"), std::string::npos);
  EXPECT_NE(json.find("\"connection_errors\":1,\"connection_errors_by_reason\":{\"tls\":1}"),
            std::string::npos);
  EXPECT_NE(json.find("\"msgs_per_s\":5.0"), std::string::npos) << json;
  EXPECT_NE(json.find("\"mb_per_s\":1.000"), std::string::npos) << json;
  EXPECT_NE(json.find("\"handshakes_per_s\":2.0"), std::string::npos) << json;
  EXPECT_NE(json.find("\"message\":{\"count\":10,\"p50\":0.100,\"p90\":0.180,\"p99\":0.200,"
                      "\"p99.9\":0.200,\"max\":0.200}"),
            std::string::npos)
      << json;
  EXPECT_EQ(json.back(), '\n');
  const std::string table = t.Table();
  EXPECT_NE(table.find("550: 2"), std::string::npos) << table;
  EXPECT_NE(table.find("message"), std::string::npos);
}

}  // namespace
}  // namespace postern::bench
