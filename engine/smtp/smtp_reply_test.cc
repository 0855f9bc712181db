#include "engine/smtp/smtp_reply.h"

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace postern::engine {
namespace {

using Result = SmtpReplyParser::Result;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(SmtpReplyTest, SingleLine) {
  const auto reply = ParseSmtpReply("250 2.1.5 Ok\r\n");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->code, 250);
  EXPECT_EQ(reply->enhanced_code, "2.1.5");
  EXPECT_THAT(reply->lines, ElementsAre("Ok"));
  EXPECT_TRUE(reply->positive());
  EXPECT_EQ(reply->ToString(), "250 2.1.5 Ok");
}

TEST(SmtpReplyTest, MultiLineKeepsEnhancedCodeOnce) {
  const auto reply = ParseSmtpReply(
      "550-5.1.1 The email account that you tried to reach\r\n"
      "550-5.1.1 does not exist.\r\n"
      "550 5.1.1 Try again.\r\n");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->code, 550);
  EXPECT_EQ(reply->enhanced_code, "5.1.1");
  EXPECT_THAT(reply->lines, ElementsAre("The email account that you tried to reach",
                                        "does not exist.", "Try again."));
  EXPECT_TRUE(reply->permanent());
  EXPECT_EQ(reply->Text(), "The email account that you tried to reach does not exist. Try again.");
}

TEST(SmtpReplyTest, BareCodeAndEmptyContinuation) {
  auto reply = ParseSmtpReply("250\r\n");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->code, 250);
  EXPECT_THAT(reply->lines, ElementsAre(""));
  EXPECT_EQ(reply->ToString(), "250");

  reply = ParseSmtpReply("220-\r\n220 ok\r\n");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_THAT(reply->lines, ElementsAre("", "ok"));
}

TEST(SmtpReplyTest, EnhancedCodeDefaultsAndMismatch) {
  // No enhanced code: derived from the class.
  auto reply = ParseSmtpReply("451 Try later\r\n");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->enhanced_code, "");
  EXPECT_EQ(reply->EnhancedOrDefault(), "4.0.0");
  EXPECT_TRUE(reply->transient());
  // A class that disagrees with the code is not an enhanced code.
  reply = ParseSmtpReply("550 4.1.1 odd\r\n");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->enhanced_code, "");
  EXPECT_EQ(reply->EnhancedOrDefault(), "5.0.0");
  EXPECT_THAT(reply->lines, ElementsAre("4.1.1 odd"));
  // Too many digits, or glued to the text.
  reply = ParseSmtpReply("550 5.1.1234 x\r\n");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->enhanced_code, "");
  reply = ParseSmtpReply("550 5.1.1x\r\n");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->enhanced_code, "");
  // A 354 has no enhanced class.
  reply = ParseSmtpReply("354 End data with <CR><LF>.<CR><LF>\r\n");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->EnhancedOrDefault(), "");
  // Alone on the line.
  reply = ParseSmtpReply("250 2.0.0\r\n");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->enhanced_code, "2.0.0");
  EXPECT_THAT(reply->lines, ElementsAre(""));
}

TEST(SmtpReplyTest, ControlOctetsAreReplaced) {
  const auto reply = ParseSmtpReply(std::string("250 a\tb\x1b[31mc\x7f\xc3\xa9\0z\r\n", 20));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->lines[0], "a\tb?[31mc?\xc3\xa9?z");
}

TEST(SmtpReplyTest, MalformedReplies) {
  struct Case {
    std::string_view input;
    std::string_view error;
  };
  const Case cases[] = {
      {"250-first\r\n251 second\r\n", "different codes"},
      {"250 ok\n", "CRLF"},
      {"250-ok\n250 ok\r\n", "CRLF"},
      {"250 a\rb\r\n", "bare CR"},
      {"25 ok\r\n", "three-digit"},
      {"2x0 ok\r\n", "three-digit"},
      {"\r\n", "three-digit"},
      {"150 ok\r\n", "outside"},
      {"650 ok\r\n", "outside"},
      {"250_ok\r\n", "space or hyphen"},
      {"2500\r\n", "space or hyphen"},
  };
  for (const Case& c : cases) {
    const auto reply = ParseSmtpReply(c.input);
    ASSERT_FALSE(reply.ok()) << c.input;
    EXPECT_THAT(std::string(reply.status().message()), HasSubstr(std::string(c.error))) << c.input;
  }
  EXPECT_FALSE(ParseSmtpReply("250 ok").ok());                  // no CRLF: incomplete
  EXPECT_FALSE(ParseSmtpReply("250-ok\r\n").ok());              // unfinished
  EXPECT_FALSE(ParseSmtpReply("250 ok\r\n250 more\r\n").ok());  // trailing reply
}

TEST(SmtpReplyTest, LineLengthLimit) {
  ReplyLimits limits;
  limits.max_line_length = 16;
  // Exactly 16 octets with CRLF: fine.
  EXPECT_TRUE(ParseSmtpReply("250 0123456789\r\n", limits).ok());
  // 17: too long.
  auto reply = ParseSmtpReply("250 0123456789a\r\n", limits);
  ASSERT_FALSE(reply.ok());
  EXPECT_THAT(std::string(reply.status().message()), HasSubstr("too long"));

  // Without a line end the parser gives up as soon as no LF can save the
  // line, instead of buffering forever.
  SmtpReplyParser parser(limits);
  SmtpReply r;
  parser.Receive("250 0123456789a");  // 15 octets: an LF could still fit
  EXPECT_EQ(parser.Next(&r), Result::kNeedMore);
  parser.Receive("b");
  EXPECT_EQ(parser.Next(&r), Result::kError);
  EXPECT_THAT(std::string(parser.error().message()), HasSubstr("too long"));
  // Sticky, and nothing is kept.
  parser.Receive("\r\n250 ok\r\n");
  EXPECT_EQ(parser.Next(&r), Result::kError);
  EXPECT_EQ(parser.buffered_bytes(), 0u);
}

TEST(SmtpReplyTest, LinesPerReplyLimit) {
  ReplyLimits limits;
  limits.max_lines = 3;
  EXPECT_TRUE(ParseSmtpReply("250-a\r\n250-b\r\n250 c\r\n", limits).ok());
  const auto reply = ParseSmtpReply("250-a\r\n250-b\r\n250-c\r\n250 d\r\n", limits);
  ASSERT_FALSE(reply.ok());
  EXPECT_THAT(std::string(reply.status().message()), HasSubstr("too many lines"));

  // A never-ending continuation is cut off at the limit, not buffered.
  SmtpReplyParser parser(limits);
  SmtpReply r;
  for (int i = 0; i < 3; ++i) {
    parser.Receive("250-more\r\n");
    EXPECT_EQ(parser.Next(&r), Result::kNeedMore);
  }
  EXPECT_EQ(parser.buffered_bytes(), 30u);
  parser.Receive("250-more\r\n");
  EXPECT_EQ(parser.Next(&r), Result::kError);
}

TEST(SmtpReplyTest, PipelinedRepliesInOneRead) {
  SmtpReplyParser parser;
  parser.Receive("250 2.1.0 Ok\r\n550 5.1.1 No such user\r\n250 2.1.5 Ok\r\n354 Go");
  SmtpReply r;
  std::vector<int> codes;
  while (parser.Next(&r) == Result::kReply) codes.push_back(r.code);
  EXPECT_THAT(codes, ElementsAre(250, 550, 250));
  EXPECT_EQ(parser.buffered_bytes(), 6u);
  parser.Receive(" ahead\r\n");
  ASSERT_EQ(parser.Next(&r), Result::kReply);
  EXPECT_EQ(r.code, 354);
  EXPECT_THAT(r.lines, ElementsAre("Go ahead"));
  EXPECT_EQ(parser.buffered_bytes(), 0u);
}

TEST(SmtpReplyTest, ByteByByteGivesTheSameReplies) {
  const std::string input =
      "250-mx.test Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 2.0.0 DSN\r\n"
      "421 4.3.2 Shutting down\r\n";
  SmtpReplyParser whole;
  whole.Receive(input);
  SmtpReplyParser split;
  std::vector<std::string> a;
  std::vector<std::string> b;
  SmtpReply r;
  while (whole.Next(&r) == Result::kReply) a.push_back(r.ToString() + "|" + r.lines[0]);
  for (char c : input) {
    split.Receive(std::string_view(&c, 1));
    while (split.Next(&r) == Result::kReply) b.push_back(r.ToString() + "|" + r.lines[0]);
  }
  EXPECT_EQ(a, b);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0], "250 mx.test Hello PIPELINING SIZE 1000 2.0.0 DSN|mx.test Hello");
  EXPECT_EQ(a[1], "421 4.3.2 Shutting down|Shutting down");
}

TEST(SmtpReplyTest, DiscardDropsPartialReply) {
  SmtpReplyParser parser;
  parser.Receive("220 2.0.0 Ready\r\n250-injected\r\n250 x");
  SmtpReply r;
  ASSERT_EQ(parser.Next(&r), Result::kReply);
  EXPECT_EQ(parser.Next(&r), Result::kNeedMore);
  EXPECT_EQ(parser.Discard(), 19u);
  EXPECT_EQ(parser.buffered_bytes(), 0u);
  parser.Receive("250 fresh\r\n");
  ASSERT_EQ(parser.Next(&r), Result::kReply);
  EXPECT_THAT(r.lines, ElementsAre("fresh"));
}

}  // namespace
}  // namespace postern::engine
