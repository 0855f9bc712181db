#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include "common/metric_region.h"
#include "common/metrics_exposition.h"

namespace postern::metrics {
namespace {

TEST(MetricTable, SeriesDoNotOverlap) {
  size_t expected = 0;
  for (size_t m = 0; m < kMetricCount; ++m) {
    auto id = static_cast<MetricId>(m);
    EXPECT_EQ(SlotOffset(id, 0), expected) << MetricDefs()[m].name;
    expected += SlotsPerSeries(id) * LabelCardinality(MetricDefs()[m].label);
  }
  EXPECT_EQ(TotalSlots(), expected);
}

TEST(MetricRegion, CountsAreSharedThroughTheFd) {
  auto region = MetricRegion::Create();
  ASSERT_TRUE(region.ok()) << region.status();
  auto attached = MetricRegion::Attach(dup((*region)->fd()));
  ASSERT_TRUE(attached.ok()) << attached.status();
  (*attached)->Add(kMessagesAccepted, 1, 3);
  (*attached)->Add(kMessagesAccepted, 1);
  EXPECT_EQ((*region)->Get(kMessagesAccepted, 1), 4u);
  EXPECT_EQ((*region)->Get(kMessagesAccepted, 0), 0u);
}

TEST(MetricRegion, AttachRefusesForeignMemory) {
  int fd = memfd_create("x", 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, static_cast<off_t>(RegionBytes())), 0);
  EXPECT_FALSE(MetricRegion::Attach(fd).ok());
}

TEST(MetricRegion, HistogramBucketsAndSum) {
  auto region = MetricRegion::Create();
  ASSERT_TRUE(region.ok());
  MetricRegion& r = **region;
  r.Observe(kSpoolBatchMessages, 0, 1);
  r.Observe(kSpoolBatchMessages, 0, 3);
  r.Observe(kSpoolBatchMessages, 0, 10000);
  EXPECT_EQ(r.Bucket(kSpoolBatchMessages, 0, 0), 1u);  // le=1
  EXPECT_EQ(r.Bucket(kSpoolBatchMessages, 0, 2), 1u);  // le=4
  EXPECT_EQ(r.Bucket(kSpoolBatchMessages, 0, BucketBounds(Buckets::kBatchSize).size()), 1u);
  EXPECT_EQ(r.Count(kSpoolBatchMessages, 0), 3u);
  EXPECT_DOUBLE_EQ(r.Sum(kSpoolBatchMessages, 0), 10004.0);
}

TEST(Exposition, SumsShardsAndNamesListeners) {
  auto a = MetricRegion::Create();
  auto b = MetricRegion::Create();
  ASSERT_TRUE(a.ok() && b.ok());
  (*a)->Add(kConnectionsAccepted, 0, 2);
  (*b)->Add(kConnectionsAccepted, 0, 5);
  (*b)->Add(kConnectionsAccepted, 1, 1);
  (*a)->Set(kSpoolMessages, 0, 7);
  (*b)->Observe(kSpoolWriteSeconds, 0, 0.003);
  ExpositionInput in;
  in.shards = {a->get(), b->get()};
  in.listener_names = {"mx", "sub\"mission"};
  std::string text = RenderPrometheus(in);
  EXPECT_NE(text.find("# TYPE postern_connections_accepted_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("postern_connections_accepted_total{listener=\"mx\"} 7\n"),
            std::string::npos);
  EXPECT_NE(text.find("postern_connections_accepted_total{listener=\"sub\\\"mission\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("postern_spool_messages{shard=\"0\"} 7\n"), std::string::npos);
  EXPECT_NE(text.find("postern_spool_messages{shard=\"1\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("postern_spool_write_seconds_bucket{le=\"0.002\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("postern_spool_write_seconds_bucket{le=\"0.005\"} 1\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("postern_spool_write_seconds_bucket{le=\"+Inf\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("postern_spool_write_seconds_count 1\n"), std::string::npos);
  EXPECT_NE(text.find("postern_messages_rejected_total{reason=\"relay_denied\"} 0\n"),
            std::string::npos);
  // Only configured listeners appear.
  EXPECT_EQ(text.find("listener=\"\""), std::string::npos);
}

TEST(Exposition, TlsHandshakesCarryListenerVersionAndResult) {
  auto a = MetricRegion::Create();
  ASSERT_TRUE(a.ok());
  (*a)->Add(kTlsHandshakes, ListenerTlsIndex(1, "TLSv1.3", "strong", ""), 2);
  (*a)->Add(kTlsHandshakes, ListenerTlsIndex(0, "", "", "no_shared_cipher"));
  (*a)->Add(kTlsHandshakes, ListenerTlsIndex(0, "", "", "something new"));
  ExpositionInput in;
  in.shards = {a->get()};
  in.listener_names = {"mx", "submission"};
  std::string text = RenderPrometheus(in);
  EXPECT_NE(text.find("postern_tls_handshakes_total{listener=\"submission\",version=\"TLSv1.3\","
                      "cipher_class=\"strong\",result=\"ok\"} 2\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("postern_tls_handshakes_total{listener=\"mx\",version=\"none\","
                      "cipher_class=\"none\",result=\"no_shared_cipher\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("postern_tls_handshakes_total{listener=\"mx\",version=\"none\","
                      "cipher_class=\"none\",result=\"other\"} 1\n"),
            std::string::npos);
}

}  // namespace
}  // namespace postern::metrics
