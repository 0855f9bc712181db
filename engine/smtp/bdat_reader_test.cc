#include "engine/smtp/bdat_reader.h"

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"

namespace postern::engine {
namespace {

struct Outcome {
  bool ok = false;
  std::string content;
};

// Feeds `chunks` (each one BDAT chunk) to a fresh reader, every chunk also
// split at `cut` where it is long enough, then finishes.
Outcome Read(const std::vector<std::string_view>& chunks, size_t cut = 0) {
  BdatReader reader(1 << 20);
  std::string content;
  for (std::string_view chunk : chunks) {
    EXPECT_TRUE(reader.Fits(chunk.size()));
    if (cut > 0 && cut < chunk.size()) {
      reader.Feed(chunk.substr(0, cut), &content);
      reader.Feed(chunk.substr(cut), &content);
    } else {
      reader.Feed(chunk, &content);
    }
  }
  Outcome outcome;
  outcome.ok = reader.Finish(&content);
  if (outcome.ok) outcome.content = content;
  return outcome;
}

TEST(BdatReaderTest, ContentIsRaw) {
  // No dot-unstuffing, no end-of-data sequence, no line limit.
  const std::string long_line(5000, 'x');
  const Outcome o = Read({"..a\r\n.\r\n", long_line + "\r\n"});
  EXPECT_TRUE(o.ok);
  EXPECT_EQ(o.content, "..a\r\n.\r\n" + long_line + "\r\n");
}

TEST(BdatReaderTest, CrlfMaySpanChunks) {
  const Outcome o = Read({"a\r", "\nb\r\n"});
  EXPECT_TRUE(o.ok);
  EXPECT_EQ(o.content, "a\r\nb\r\n");
}

TEST(BdatReaderTest, MissingFinalCrlfIsAdded) {
  EXPECT_EQ(Read({"a\r\nb"}).content, "a\r\nb\r\n");
  EXPECT_EQ(Read({"a\r\n", ""}).content, "a\r\n");
  const Outcome empty = Read({});
  EXPECT_TRUE(empty.ok);
  EXPECT_EQ(empty.content, "");
}

TEST(BdatReaderTest, BareCrOrLfAnywhere) {
  for (const std::vector<std::string_view>& chunks : std::vector<std::vector<std::string_view>>{
           {"a\nb\r\n"},
           {"a\rb\r\n"},
           {"a\r\r\n"},
           {"a\r", "b\r\n"},
           {"a\r", "\r\n"},
           {"\n"},
           {"a\r"},  // a final CR can only be bare
           {"a\r\n", "\n"},
           {"ok\r\n", "x\ny\r\n", "more\r\n"},
       }) {
    for (size_t cut = 0; cut < 6; ++cut) {
      const Outcome o = Read(chunks, cut);
      EXPECT_FALSE(o.ok) << testing::PrintToString(chunks) << " cut " << cut;
    }
  }
}

TEST(BdatReaderTest, NothingAppendedAfterAnError) {
  BdatReader reader(1 << 20);
  std::string content;
  reader.Feed("a\nb", &content);
  EXPECT_TRUE(reader.bare_newline());
  reader.Feed("more", &content);
  EXPECT_FALSE(reader.Finish(&content));
  EXPECT_EQ(content.find("more"), std::string::npos);
  EXPECT_EQ(reader.size(), 7u);
}

TEST(BdatReaderTest, SizeLimitAcrossChunks) {
  BdatReader reader(10);
  std::string content;
  EXPECT_TRUE(reader.Fits(10));
  EXPECT_FALSE(reader.Fits(11));
  reader.Feed("123456", &content);
  EXPECT_TRUE(reader.Fits(4));
  EXPECT_FALSE(reader.Fits(5));
  EXPECT_FALSE(reader.Fits(std::numeric_limits<uint64_t>::max()));
  reader.Feed("7890", &content);
  EXPECT_TRUE(reader.Fits(0));
  EXPECT_FALSE(reader.Fits(1));
  EXPECT_EQ(reader.size(), 10u);
  EXPECT_TRUE(reader.Finish(&content));
  EXPECT_EQ(content, "1234567890\r\n");
}

TEST(BdatReaderTest, NextLineBreakFindsTheFirstCrOrLf) {
  // Every position of every short string over {a, CR, LF}, against a plain
  // byte loop.
  const char alphabet[] = {'a', '\r', '\n'};
  for (int len = 0; len <= 7; ++len) {
    int total = 1;
    for (int k = 0; k < len; ++k) total *= 3;
    for (int code = 0; code < total; ++code) {
      std::string text;
      for (int k = 0, c = code; k < len; ++k, c /= 3) text.push_back(alphabet[c % 3]);
      for (size_t from = 0; from <= text.size(); ++from) {
        size_t expected = from;
        while (expected < text.size() && text[expected] != '\r' && text[expected] != '\n') {
          ++expected;
        }
        ASSERT_EQ(BdatReader::NextLineBreak(text, from), expected) << "from " << from;
      }
    }
  }
}

TEST(BdatReaderTest, LargeChunkWithLongLinesIsReadWhole) {
  std::string body;
  for (int i = 0; i < 2000; ++i) body += std::string(i % 900, 'x') + "\r\n";
  Outcome whole = Read({body});
  ASSERT_TRUE(whole.ok);
  EXPECT_EQ(whole.content, body);
  EXPECT_EQ(Read({body}, 4097).content, body);
  std::string bare = body;
  bare[bare.size() / 2] = '\n';
  EXPECT_FALSE(Read({bare}).ok);
}

}  // namespace
}  // namespace postern::engine
