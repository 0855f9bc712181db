#include "bench/loadgen_message.h"

#include <map>
#include <random>
#include <set>
#include <string>

#include "gtest/gtest.h"

namespace postern::bench {
namespace {

TEST(ParseByteCountTest, NumbersAndSuffixes) {
  EXPECT_EQ(*ParseByteCount("4096"), 4096u);
  EXPECT_EQ(*ParseByteCount("4k"), 4096u);
  EXPECT_EQ(*ParseByteCount("4K"), 4096u);
  EXPECT_EQ(*ParseByteCount("2m"), 2u * 1024 * 1024);
  for (const char* bad : {"", "0", "k", "-1", "1.5", "12x", " 12", "4kk", "99999999999999m"}) {
    EXPECT_FALSE(ParseByteCount(bad).ok()) << bad;
  }
}

TEST(ParseSizeMixTest, WeightsAndSizes) {
  absl::StatusOr<SizeMix> mix = ParseSizeMix("60:4096,30:40960,10:409600");
  ASSERT_TRUE(mix.ok()) << mix.status();
  ASSERT_EQ(mix->entries.size(), 3u);
  EXPECT_EQ(mix->entries[0].weight, 60u);
  EXPECT_EQ(mix->entries[0].bytes, 4096u);
  EXPECT_EQ(mix->entries[2].weight, 10u);
  EXPECT_EQ(mix->entries[2].bytes, 409600u);
  EXPECT_EQ(mix->total_weight(), 100u);
  EXPECT_DOUBLE_EQ(mix->MeanBytes(), 0.6 * 4096 + 0.3 * 40960 + 0.1 * 409600);

  absl::StatusOr<SizeMix> k = ParseSizeMix("1:1k,3:10K");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->entries[1].bytes, 10240u);
  EXPECT_EQ(k->total_weight(), 4u);
}

TEST(ParseSizeMixTest, Errors) {
  for (const char* bad : {"", "4096", "60:", ":4096", "0:4096", "60:0", "60:4096,", "a:1",
                          "60:4096;40:1", "1:2:3", "60:4096,,40:1"}) {
    EXPECT_FALSE(ParseSizeMix(bad).ok()) << bad;
  }
}

TEST(SizeMixTest, DrawsHonourTheWeights) {
  SizeMix mix = *ParseSizeMix("60:100,30:200,10:300");
  std::mt19937_64 rng(42);
  std::map<uint64_t, int> seen;
  const int n = 100000;
  for (int i = 0; i < n; ++i) ++seen[mix.Draw(rng)];
  ASSERT_EQ(seen.size(), 3u);
  // Binomial standard deviation at n = 100000 is under 0.16 %; 1 % is loose
  // enough never to flake and tight enough to catch a wrong weighting.
  EXPECT_NEAR(seen[100] / double(n), 0.60, 0.01);
  EXPECT_NEAR(seen[200] / double(n), 0.30, 0.01);
  EXPECT_NEAR(seen[300] / double(n), 0.10, 0.01);
}

// Checks the SMTP-level shape of a generated body.
void ExpectValidContent(const std::string& body) {
  ASSERT_GE(body.size(), 2u);
  EXPECT_EQ(body.substr(body.size() - 2), "\r\n");
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] == '\n') {
      ASSERT_TRUE(i > 0 && body[i - 1] == '\r') << "bare LF at " << i;
    }
    if (body[i] == '\r') {
      ASSERT_TRUE(i + 1 < body.size() && body[i + 1] == '\n') << "bare CR at " << i;
    }
  }
  size_t start = 0;
  while (start < body.size()) {
    const size_t end = body.find("\r\n", start);
    ASSERT_NE(end, std::string::npos);
    EXPECT_LE(end - start, 998u);  // RFC 5322 line limit
    start = end + 2;
  }
  EXPECT_NE(body.find("\r\n\r\n"), std::string::npos);  // headers, blank line, body
}

TEST(MessageFactoryTest, ExactSizesValidContentAndDotLines) {
  MessageOptions options;
  options.from = "s@loadgen.test";
  options.to = "r@sink.test";
  options.run_id = "abc";
  MessageFactory factory(options, 1);
  engine::OutboundMessage m;
  // A fixed size per message, sweeping across every filler remainder.
  for (uint64_t size = 300; size < 700; ++size) {
    factory = MessageFactory(
        [&] {
          MessageOptions o = options;
          o.sizes = SizeMix::Fixed(size);
          return o;
        }(),
        1);
    factory.Make(size, &m);
    ASSERT_EQ(m.body.size(), size);
    ExpectValidContent(m.body);
  }
  MessageOptions big = options;
  big.sizes = SizeMix::Fixed(409600);
  MessageFactory large(big, 1);
  large.Make(1, &m);
  ASSERT_EQ(m.body.size(), 409600u);
  ExpectValidContent(m.body);
  // Lines that need dot-stuffing, including a lone "." that would end DATA.
  EXPECT_NE(m.body.find("\r\n.\r\n"), std::string::npos);
  EXPECT_NE(m.body.find("\r\n.."), std::string::npos);
  EXPECT_EQ(m.body.rfind("Message-ID: <abc.1@loadgen.test>\r\n", 0), 0u);
  EXPECT_EQ(m.sender, "s@loadgen.test");
}

TEST(MessageFactoryTest, TinySizesGiveTheHeadersOnly) {
  MessageOptions o;
  o.sizes = SizeMix::Fixed(10);
  MessageFactory factory(o, 1);
  engine::OutboundMessage m;
  factory.Make(7, &m);
  EXPECT_GT(m.body.size(), 10u);
  ExpectValidContent(m.body);
  EXPECT_EQ(m.body.substr(m.body.size() - 4), "\r\n\r\n");
}

TEST(MessageFactoryTest, UniqueMessageIdsAndRecipientCounter) {
  MessageOptions o;
  o.to = "user%d@sink.test";
  o.recipients = 3;
  o.run_id = "run1";
  o.sizes = *ParseSizeMix("1:500,1:2000");
  MessageFactory factory(o, 9);
  std::set<std::string> ids;
  std::set<std::string> recipients;
  engine::OutboundMessage m;
  for (uint64_t seq = 0; seq < 5000; ++seq) {
    factory.Make(seq, &m);
    const size_t end = m.body.find("\r\n");
    ASSERT_TRUE(ids.insert(m.body.substr(0, end)).second) << seq;
    EXPECT_EQ(m.body.substr(0, end), "Message-ID: " + factory.MessageId(seq));
    ASSERT_EQ(m.recipients.size(), 3u);
    for (const auto& r : m.recipients) recipients.insert(r.address);
  }
  EXPECT_EQ(recipients.size(), 15000u);
  EXPECT_TRUE(recipients.count("user1@sink.test"));
  EXPECT_TRUE(recipients.count("user15000@sink.test"));
  // Another run: different ids for the same numbers.
  o.run_id = "run2";
  MessageFactory other(o, 9);
  EXPECT_NE(other.MessageId(0), factory.MessageId(0));
}

TEST(MessageFactoryTest, MixedSizesFollowTheMix) {
  MessageOptions o;
  o.sizes = *ParseSizeMix("3:1000,1:5000");
  MessageFactory factory(o, 3);
  engine::OutboundMessage m;
  std::map<size_t, int> sizes;
  for (int i = 0; i < 4000; ++i) {
    factory.Make(i, &m);
    ++sizes[m.body.size()];
  }
  ASSERT_EQ(sizes.size(), 2u);
  EXPECT_NEAR(sizes[1000] / 4000.0, 0.75, 0.04);
  EXPECT_NEAR(sizes[5000] / 4000.0, 0.25, 0.04);
}

}  // namespace
}  // namespace postern::bench
