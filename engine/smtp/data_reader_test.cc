#include "engine/smtp/data_reader.h"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"

namespace postern::engine {
namespace {

using Result = DataReader::Result;

constexpr size_t kBig = 1 << 20;

struct Outcome {
  bool done = false;
  Result result = Result::kOk;
  std::string content;
  size_t consumed = 0;  // input bytes consumed in total

  bool operator==(const Outcome& o) const {
    // After an error the content is incomplete by contract (and depends on
    // where the chunks were cut), so it is only compared for good messages.
    return done == o.done && result == o.result && consumed == o.consumed &&
           (result != Result::kOk || content == o.content);
  }
};

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  return os << "{done=" << o.done << " result=" << static_cast<int>(o.result)
            << " consumed=" << o.consumed << " content=\"" << o.content << "\"}";
}

// Feeds `input` split at the given positions, as a session would: each chunk
// is offered once; whatever is not consumed stays unconsumed.
Outcome FeedChunks(std::string_view input, const std::vector<size_t>& cuts, size_t max_size = kBig,
                   size_t max_line = 1000) {
  DataReader reader(max_size, max_line);
  Outcome o;
  size_t start = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(input.size());
  for (size_t end : ends) {
    const std::string_view chunk = input.substr(start, end - start);
    const size_t used = reader.Feed(chunk, &o.content);
    EXPECT_LE(used, chunk.size());
    o.consumed += used;
    if (reader.done()) break;
    EXPECT_EQ(used, chunk.size()) << "a reader that is not done consumes everything";
    start = end;
  }
  o.done = reader.done();
  o.result = reader.result();
  return o;
}

Outcome FeedAll(std::string_view input, size_t max_size = kBig, size_t max_line = 1000) {
  return FeedChunks(input, {}, max_size, max_line);
}

// Every split into two chunks, and byte by byte, must give the same outcome.
void ExpectChunkingInvariant(std::string_view input, size_t max_size = kBig,
                             size_t max_line = 1000) {
  const Outcome whole = FeedAll(input, max_size, max_line);
  for (size_t cut = 0; cut <= input.size(); ++cut) {
    EXPECT_EQ(FeedChunks(input, {cut}, max_size, max_line), whole) << "cut at " << cut;
  }
  std::vector<size_t> every;
  for (size_t i = 1; i < input.size(); ++i) every.push_back(i);
  EXPECT_EQ(FeedChunks(input, every, max_size, max_line), whole) << "byte by byte";
}

TEST(DataReaderTest, SimpleMessage) {
  const std::string input = "Subject: hi\r\n\r\nbody\r\n.\r\n";
  const Outcome o = FeedAll(input);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.result, Result::kOk);
  EXPECT_EQ(o.content, "Subject: hi\r\n\r\nbody\r\n");
  EXPECT_EQ(o.consumed, input.size());
  ExpectChunkingInvariant(input);
}

TEST(DataReaderTest, EmptyMessageAtStart) {
  // The start of the content counts as following a CRLF.
  const Outcome o = FeedAll(".\r\n");
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.result, Result::kOk);
  EXPECT_EQ(o.content, "");
  EXPECT_EQ(o.consumed, 3u);
}

TEST(DataReaderTest, LeavesBytesAfterEndUnconsumed) {
  const std::string input = "a\r\n.\r\nMAIL FROM:<x@y.example>\r\n";
  const Outcome o = FeedAll(input);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.consumed, 6u);
  EXPECT_EQ(input.substr(o.consumed), "MAIL FROM:<x@y.example>\r\n");
  ExpectChunkingInvariant(input);
}

TEST(DataReaderTest, ConsumesNothingOnceDone) {
  DataReader reader(kBig, 1000);
  std::string content;
  EXPECT_EQ(reader.Feed(".\r\n", &content), 3u);
  EXPECT_TRUE(reader.done());
  EXPECT_EQ(reader.Feed("more\r\n", &content), 0u);
  EXPECT_EQ(content, "");
}

TEST(DataReaderTest, DotUnstuffing) {
  const std::string input = "..leading\r\n.\r\n";
  EXPECT_EQ(FeedAll(input).content, ".leading\r\n");
  const std::string input2 = "a\r\n...\r\n.x\r\nmid.dle\r\n..\r\n.\r\n";
  const Outcome o = FeedAll(input2);
  EXPECT_EQ(o.result, Result::kOk);
  EXPECT_EQ(o.content, "a\r\n..\r\nx\r\nmid.dle\r\n.\r\n");
  ExpectChunkingInvariant(input2);
}

TEST(DataReaderTest, NotDoneWithoutEnd) {
  const Outcome o = FeedAll("line\r\n.\r");
  EXPECT_FALSE(o.done);
  EXPECT_EQ(o.consumed, 8u);
  // ".x" is content, not an end.
  EXPECT_FALSE(FeedAll("a\r\n.x\r\n").done);
  // A dot line not at the start of a line is content.
  EXPECT_FALSE(FeedAll("a.\r\n").done);
}

// The SMTP smuggling variants: none of them ends the data; each is flagged;
// only the real <CRLF>.<CRLF> ends it, so what follows the fake end is content.
TEST(DataReaderTest, SmugglingVariantsDoNotEndData) {
  const std::string_view fake_ends[] = {"\n.\n",   "\r\n.\n", "\n.\r\n",    "\r.\r",
                                        "\r.\r\n", "\r\n.\r", "\r\n.\r\r\n"};
  for (std::string_view fake : fake_ends) {
    const std::string smuggled = "MAIL FROM:<evil@x.example>\r\nRCPT TO:<v@y.example>\r\nDATA\r\n";
    const std::string input = "hello" + std::string(fake) + smuggled + "x\r\n.\r\nQUIT\r\n";
    const Outcome o = FeedAll(input);
    SCOPED_TRACE(testing::PrintToString(std::string(fake)));
    EXPECT_TRUE(o.done);
    EXPECT_EQ(o.result, Result::kBareNewline);
    // The real end is just before QUIT: nothing smuggled is left over.
    EXPECT_EQ(input.substr(o.consumed), "QUIT\r\n");
    ExpectChunkingInvariant(input);
  }
}

TEST(DataReaderTest, SmugglingAtStartOfData) {
  for (std::string_view input : {"\n.\nQUIT\r\n.\r\n", ".\n\r\n.\r\n", "\r.\r\n.\r\n"}) {
    const Outcome o = FeedAll(input);
    EXPECT_TRUE(o.done) << testing::PrintToString(std::string(input));
    EXPECT_EQ(o.result, Result::kBareNewline);
    EXPECT_EQ(o.consumed, input.size());
  }
}

TEST(DataReaderTest, BareCrOrLfInTheMiddle) {
  for (std::string_view input :
       {"a\nb\r\n.\r\n", "a\rb\r\n.\r\n", "a\r\r\n.\r\n", "\n\r\n.\r\n", "a\r\n\n.\r\n.\r\n"}) {
    const Outcome o = FeedAll(input);
    SCOPED_TRACE(testing::PrintToString(std::string(input)));
    EXPECT_TRUE(o.done);
    EXPECT_EQ(o.result, Result::kBareNewline);
    ExpectChunkingInvariant(input);
  }
}

TEST(DataReaderTest, LineLengthLimit) {
  // 998 octets + CRLF = 1000: allowed. One more: too long.
  const std::string ok = std::string(998, 'a') + "\r\n.\r\n";
  EXPECT_EQ(FeedAll(ok).result, Result::kOk);
  const std::string too_long = std::string(999, 'a') + "\r\n.\r\n";
  const Outcome o = FeedAll(too_long);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.result, Result::kLineTooLong);
  EXPECT_EQ(o.consumed, too_long.size());
  // The dot added for transparency is not counted (RFC 5321 4.5.3.1.6).
  EXPECT_EQ(FeedAll("." + std::string(998, '.') + "\r\n.\r\n").result, Result::kOk);
  // The counter restarts on each line.
  EXPECT_EQ(FeedAll(std::string(998, 'a') + "\r\n" + std::string(998, 'b') + "\r\n.\r\n").result,
            Result::kOk);
}

TEST(DataReaderTest, LineLengthChunked) {
  const std::string input = "ab\r\n" + std::string(9, 'x') + "\r\nz\r\n.\r\n";
  EXPECT_EQ(FeedAll(input, kBig, 10).result, Result::kLineTooLong);
  EXPECT_EQ(FeedAll(input, kBig, 11).result, Result::kOk);
  ExpectChunkingInvariant(input, kBig, 10);
  ExpectChunkingInvariant(input, kBig, 11);
}

TEST(DataReaderTest, SizeLimit) {
  // Content is "0123456789\r\n": 12 octets.
  const std::string input = "0123456789\r\n.\r\nNOOP\r\n";
  EXPECT_EQ(FeedAll(input, 12).result, Result::kOk);
  const Outcome o = FeedAll(input, 11);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.result, Result::kTooLarge);
  // Storing stopped at the limit, reading did not.
  EXPECT_LE(o.content.size(), 11u);
  EXPECT_EQ(input.substr(o.consumed), "NOOP\r\n");
  ExpectChunkingInvariant(input, 11);
  ExpectChunkingInvariant(input, 5);
}

TEST(DataReaderTest, SizeCountsUnstuffedContent) {
  DataReader reader(kBig, 1000);
  std::string content;
  reader.Feed("..ab\r\n.\r\n", &content);
  EXPECT_EQ(reader.size(), 5u);  // ".ab\r\n"
  EXPECT_EQ(content.size(), 5u);
}

TEST(DataReaderTest, FirstErrorWins) {
  const std::string input = "a\nb" + std::string(2000, 'c') + "\r\n.\r\n";
  EXPECT_EQ(FeedAll(input, 10).result, Result::kBareNewline);
  const std::string input2 = std::string(2000, 'c') + "\nb\r\n.\r\n";
  EXPECT_EQ(FeedAll(input2).result, Result::kLineTooLong);
}

TEST(DataReaderTest, LimitCrossedFirstWinsWhateverTheChunking) {
  // Size is crossed at the 24th 'x' (12 + 24 > 35), the line limit only at
  // the 29th (29 > 30 - 2): too large, even when both fall in one run.
  const std::string input = "0123456789\r\n" + std::string(40, 'x') + "\r\n.\r\n";
  EXPECT_EQ(FeedAll(input, 35, 30).result, Result::kTooLarge);
  ExpectChunkingInvariant(input, 35, 30);
  // The other way round.
  EXPECT_EQ(FeedAll(input, 45, 30).result, Result::kLineTooLong);
  ExpectChunkingInvariant(input, 45, 30);
}

TEST(DataReaderTest, BinaryAndEightBitContentKept) {
  const std::string input = std::string("caf\xc3\xa9 \0 \x7f\xff", 10) + "\r\n.\r\n";
  const Outcome o = FeedAll(input);
  EXPECT_EQ(o.result, Result::kOk);
  EXPECT_EQ(o.content, std::string("caf\xc3\xa9 \0 \x7f\xff\r\n", 12));
}

}  // namespace
}  // namespace postern::engine
