#include "bench/sink_session.h"

#include <openssl/sha.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace postern::bench {
namespace {

using Event = SinkSession::Event;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Pair;
using ::testing::StartsWith;

std::string Sha256Hex(std::string_view data) {
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(data.data()), data.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (uint8_t b : digest) {
    hex.push_back(kHex[b >> 4]);
    hex.push_back(kHex[b & 0xF]);
  }
  return hex;
}

// Drives a session as the sink's connection glue does: feed, process, and
// finish every ended message at once, keeping the accepted ones.
class Driver {
 public:
  explicit Driver(SinkOptions options = {}) : options_(std::move(options)), session_(&options_) {
    session_.Start(&out_);
  }

  // Feeds `bytes` (in pieces of `piece` octets if non-zero) and returns the
  // replies produced, clearing them.
  std::string Send(std::string_view bytes, size_t piece = 0) {
    if (piece == 0) piece = bytes.size() == 0 ? 1 : bytes.size();
    for (size_t i = 0; i < bytes.size(); i += piece) {
      session_.Receive(bytes.substr(i, piece));
      Drive();
    }
    if (bytes.empty()) Drive();
    return TakeOutput();
  }

  std::string TakeOutput() { return std::exchange(out_, std::string()); }

  void Drive() {
    while (true) {
      last_ = session_.Process(&out_);
      if (last_ != Event::kMessage) return;
      ++ended_;
      if (session_.message_accepted()) accepted_.push_back(session_.message());
      session_.FinishMessage(&out_);
    }
  }

  SinkSession& session() { return session_; }
  Event last() const { return last_; }
  const std::vector<SinkMessage>& accepted() const { return accepted_; }
  int ended() const { return ended_; }

 private:
  SinkOptions options_;
  SinkSession session_;
  std::string out_;
  Event last_ = Event::kNeedInput;
  std::vector<SinkMessage> accepted_;
  int ended_ = 0;
};

constexpr std::string_view kEnvelope =
    "EHLO client.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n";

TEST(SinkSessionTest, GreetingAndEhloListExtensions) {
  SinkOptions options;
  options.hostname = "sink.test";
  options.starttls = true;
  Driver d(options);
  EXPECT_EQ(d.TakeOutput(), "220 sink.test ESMTP postern-sink\r\n");
  EXPECT_EQ(d.Send("EHLO c.test\r\n"),
            "250-sink.test\r\n250-PIPELINING\r\n250-SIZE\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
            "250-CHUNKING\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n");
}

TEST(SinkSessionTest, DisabledExtensionsAreNotOfferedAndTheirParametersRefused) {
  SinkOptions options;
  options.pipelining = false;
  options.chunking = false;
  options.eight_bit_mime = false;
  options.smtputf8 = false;
  options.dsn = false;
  Driver d(options);
  d.TakeOutput();
  EXPECT_EQ(d.Send("EHLO c\r\n"),
            "250-postern-sink.test\r\n250-SIZE\r\n250 ENHANCEDSTATUSCODES\r\n");
  EXPECT_THAT(d.Send("MAIL FROM:<a@x> BODY=8BITMIME\r\n"), StartsWith("555 5.5.4"));
  EXPECT_THAT(d.Send("MAIL FROM:<a@x> SMTPUTF8\r\n"), StartsWith("555 5.5.4"));
  EXPECT_THAT(d.Send("MAIL FROM:<a@x> RET=FULL\r\n"), StartsWith("555 5.5.4"));
  EXPECT_THAT(d.Send("MAIL FROM:<a@x> SIZE=10 BODY=7BIT\r\n"), StartsWith("250 "));
  EXPECT_THAT(d.Send("RCPT TO:<b@y> NOTIFY=NEVER\r\n"), StartsWith("555 5.5.4"));
  EXPECT_THAT(d.Send("RCPT TO:<b@y>\r\n"), StartsWith("250 "));
  // BDAT not offered: refused, but its octets are consumed, not run as commands.
  EXPECT_EQ(d.Send("BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n"),
            "502 5.5.1 Error: BDAT not offered\r\n250 2.0.0 Ok\r\n");
  EXPECT_THAT(d.accepted(), IsEmpty());
}

TEST(SinkSessionTest, DataIsUnstuffedHashedAndRecorded) {
  Driver d;
  d.TakeOutput();
  std::string replies = d.Send(
      "EHLO client.test\r\nMAIL FROM:<a@x.test> SIZE=42 BODY=8BITMIME\r\n"
      "RCPT TO:<b@y.test> NOTIFY=SUCCESS,FAILURE\r\nRCPT TO:<c@y.test>\r\nDATA\r\n");
  EXPECT_THAT(replies, HasSubstr("354 "));
  EXPECT_EQ(d.Send("Subject: hi\r\n\r\n..leading dot\r\nend\r\n.\r\n"), "250 2.0.0 Ok: queued\r\n");
  ASSERT_EQ(d.accepted().size(), 1u);
  const SinkMessage& m = d.accepted()[0];
  const std::string body = "Subject: hi\r\n\r\n.leading dot\r\nend\r\n";
  EXPECT_EQ(m.size, body.size());
  EXPECT_EQ(m.sha256_hex, Sha256Hex(body));
  EXPECT_EQ(m.helo, "client.test");
  EXPECT_TRUE(m.esmtp);
  EXPECT_FALSE(m.bdat);
  EXPECT_EQ(m.mail_from, "a@x.test");
  EXPECT_THAT(m.mail_params, ElementsAre(Pair("SIZE", "42"), Pair("BODY", "8BITMIME")));
  EXPECT_THAT(m.rcpt, ElementsAre("b@y.test", "c@y.test"));
  ASSERT_EQ(m.rcpt_params.size(), 2u);
  EXPECT_THAT(m.rcpt_params[0], ElementsAre(Pair("NOTIFY", "SUCCESS,FAILURE")));
  EXPECT_THAT(m.rcpt_params[1], IsEmpty());
  EXPECT_FALSE(m.tls.has_value());
}

TEST(SinkSessionTest, ContentSplitAnywhereGivesTheSameHash) {
  const std::string unstuffed = "line one\r\n.\r\n.. two dots\r\n\r\n.x\r\n";
  for (size_t piece : {1, 2, 3, 7}) {
    Driver d;
    d.Send(std::string(kEnvelope) + "DATA\r\n");
    // A stuffed "." line ends nothing: ".\r\n" was sent as "..\r\n".
    std::string stuffed = "line one\r\n..\r\n... two dots\r\n\r\n..x\r\n.\r\n";
    EXPECT_EQ(d.Send(stuffed, piece), "250 2.0.0 Ok: queued\r\n") << piece;
    ASSERT_EQ(d.accepted().size(), 1u);
    EXPECT_EQ(d.accepted()[0].sha256_hex, Sha256Hex(unstuffed)) << piece;
    EXPECT_EQ(d.accepted()[0].size, unstuffed.size());
  }
}

TEST(SinkSessionTest, PipelinedTransactionsAreAnsweredInOrder) {
  Driver d;
  d.TakeOutput();
  std::string replies = d.Send(
      "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\none\r\n.\r\n"
      "MAIL FROM:<>\r\nRCPT TO:<c@y>\r\nRCPT TO:<d@y>\r\nDATA\r\ntwo\r\n.\r\nQUIT\r\n");
  EXPECT_THAT(replies, HasSubstr("354 End data"));
  EXPECT_THAT(replies, ::testing::EndsWith("250 2.0.0 Ok: queued\r\n221 2.0.0 Bye\r\n"));
  EXPECT_EQ(d.last(), Event::kClose);
  ASSERT_EQ(d.accepted().size(), 2u);
  EXPECT_EQ(d.accepted()[0].sha256_hex, Sha256Hex("one\r\n"));
  EXPECT_EQ(d.accepted()[1].mail_from, "");
  EXPECT_THAT(d.accepted()[1].rcpt, ElementsAre("c@y", "d@y"));
  EXPECT_EQ(d.accepted()[1].sha256_hex, Sha256Hex("two\r\n"));
}

TEST(SinkSessionTest, BdatChunksAreHashedRaw) {
  Driver d;
  d.Send(kEnvelope);
  // Raw octets: a line with a lone dot and no final CRLF stay as they are.
  EXPECT_EQ(d.Send("BDAT 5\r\n.\r\nab"), "250 2.0.0 5 octets received\r\n");
  EXPECT_EQ(d.Send("BDAT 3 LAST\r\ncdeNOOP\r\n", 2), "250 2.0.0 Ok: queued\r\n250 2.0.0 Ok\r\n");
  ASSERT_EQ(d.accepted().size(), 1u);
  EXPECT_TRUE(d.accepted()[0].bdat);
  EXPECT_EQ(d.accepted()[0].size, 8u);
  EXPECT_EQ(d.accepted()[0].sha256_hex, Sha256Hex(".\r\nabcde"));
  // BDAT 0 LAST completes at once; DATA after BDAT is refused.
  d.Send(kEnvelope);
  EXPECT_EQ(d.Send("BDAT 2\r\nhiDATA\r\nBDAT 0 LAST\r\n"),
            "250 2.0.0 2 octets received\r\n503 5.5.1 Error: DATA after BDAT\r\n"
            "250 2.0.0 Ok: queued\r\n");
  ASSERT_EQ(d.accepted().size(), 2u);
  EXPECT_EQ(d.accepted()[1].sha256_hex, Sha256Hex("hi"));
}

TEST(SinkSessionTest, BdatWithoutTransactionIsConsumedAndRefused) {
  Driver d;
  d.TakeOutput();
  EXPECT_EQ(d.Send("EHLO c\r\nBDAT 8 LAST\r\nRSET\r\n\r\nNOOP\r\n"),
            "250-postern-sink.test\r\n250-PIPELINING\r\n250-SIZE\r\n250-8BITMIME\r\n"
            "250-SMTPUTF8\r\n250-CHUNKING\r\n250-DSN\r\n250 ENHANCEDSTATUSCODES\r\n"
            "503 5.5.1 Error: need MAIL command\r\n250 2.0.0 Ok\r\n");
  EXPECT_EQ(
      d.Send("BDAT x\r\nNOOP\r\n"),
      "501 5.5.4 Syntax: BDAT chunk-size [LAST]\r\n421 4.5.0 Error: BDAT stream out of sync\r\n");
  EXPECT_EQ(d.last(), Event::kClose);
}

TEST(SinkSessionTest, ConfiguredRejections) {
  SinkOptions options;
  options.reply_rcpt = "550 5.1.1 no such user";
  options.reject_rcpt = "bad";
  options.reply_data = "451 4.3.0 try later";
  Driver d(options);
  d.TakeOutput();
  EXPECT_EQ(
      d.Send("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<bad@y>\r\nDATA\r\n"),
      std::string("250-postern-sink.test\r\n250-PIPELINING\r\n250-SIZE\r\n250-8BITMIME\r\n"
                  "250-SMTPUTF8\r\n250-CHUNKING\r\n250-DSN\r\n250 ENHANCEDSTATUSCODES\r\n") +
          "250 2.1.0 Ok\r\n550 5.1.1 no such user\r\n554 5.5.1 Error: no valid recipients\r\n");
  EXPECT_EQ(d.Send("RCPT TO:<good@y>\r\nDATA\r\nx\r\n.\r\n"),
            "250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n451 4.3.0 try later\r\n");
  EXPECT_EQ(d.ended(), 1);
  EXPECT_THAT(d.accepted(), IsEmpty());

  SinkOptions mail_refused;
  mail_refused.reply_mail = "451 4.3.0 try later";
  Driver m(mail_refused);
  m.Send("HELO c\r\n");
  EXPECT_EQ(m.Send("MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n"),
            "451 4.3.0 try later\r\n503 5.5.1 Error: need MAIL command\r\n");
}

TEST(SinkSessionTest, RejectRcptWithoutSubstringAppliesToAll) {
  SinkOptions options;
  options.reply_rcpt = "550 5.1.1 no such user";
  Driver d(options);
  d.Send("HELO c\r\nMAIL FROM:<a@x>\r\n");
  EXPECT_EQ(d.Send("RCPT TO:<good@y>\r\n"), "550 5.1.1 no such user\r\n");
}

TEST(SinkSessionTest, NoEhloFallsBackToHelo) {
  SinkOptions options;
  options.ehlo = false;
  Driver d(options);
  d.TakeOutput();
  EXPECT_THAT(d.Send("EHLO c\r\n"), StartsWith("502 "));
  EXPECT_THAT(d.Send("MAIL FROM:<a@x>\r\n"), StartsWith("503 "));
  EXPECT_EQ(d.Send("HELO c\r\n"), "250 postern-sink.test\r\n");
  EXPECT_THAT(d.Send("MAIL FROM:<a@x> SIZE=1\r\n"), StartsWith("555 "));  // no ESMTP
  d.Send("MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nbody\r\n.\r\n");
  ASSERT_EQ(d.accepted().size(), 1u);
  EXPECT_FALSE(d.accepted()[0].esmtp);
  EXPECT_EQ(d.accepted()[0].helo, "c");
}

TEST(SinkSessionTest, StartTlsDropsPipelinedBytesAndResetsTheSession) {
  SinkOptions options;
  options.starttls = true;
  Driver d(options);
  d.Send("EHLO c\r\nMAIL FROM:<a@x>\r\n");
  EXPECT_EQ(d.Send("STARTTLS\r\nRCPT TO:<evil@y>\r\n"), "220 2.0.0 Ready to start TLS\r\n");
  EXPECT_EQ(d.last(), Event::kStartTls);
  EXPECT_EQ(d.Send("NOOP\r\n"), "");  // before TlsStarted: ignored
  EXPECT_EQ(d.last(), Event::kStartTls);
  d.session().TlsStarted(SinkTlsInfo{"TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256", "mx.test"});
  EXPECT_THAT(d.Send("MAIL FROM:<a@x>\r\n"), StartsWith("503 5.5.1 Error: send HELO"));
  EXPECT_THAT(d.Send("EHLO c\r\n"), Not(HasSubstr("STARTTLS")));
  EXPECT_THAT(d.Send("STARTTLS\r\n"), StartsWith("503 "));
  d.Send("MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nx\r\n.\r\n");
  ASSERT_EQ(d.accepted().size(), 1u);
  ASSERT_TRUE(d.accepted()[0].tls.has_value());
  EXPECT_EQ(d.accepted()[0].tls->version, "TLSv1.2");
  EXPECT_EQ(d.accepted()[0].tls->sni, "mx.test");
}

TEST(SinkSessionTest, StartTlsNotOfferedIsRefused) {
  Driver d;
  d.Send("EHLO c\r\n");
  EXPECT_THAT(d.Send("STARTTLS\r\n"), StartsWith("502 "));
  EXPECT_EQ(d.last(), Event::kNeedInput);
}

TEST(SinkSessionTest, MessageEndWaitsForFinish) {
  SinkOptions options;
  SinkSession s(&options);
  std::string out;
  s.Start(&out);
  s.Receive(std::string(kEnvelope) + "DATA\r\nx\r\n.\r\nNOOP\r\n");
  EXPECT_EQ(s.Process(&out), Event::kMessage);
  EXPECT_TRUE(s.message_accepted());
  out.clear();
  // The delayed reply: nothing more is answered until FinishMessage.
  EXPECT_EQ(s.Process(&out), Event::kWaitMessage);
  s.Receive("NOOP\r\n");
  EXPECT_EQ(s.Process(&out), Event::kWaitMessage);
  EXPECT_EQ(out, "");
  s.FinishMessage(&out);
  EXPECT_EQ(s.Process(&out), Event::kNeedInput);
  EXPECT_EQ(out, "250 2.0.0 Ok: queued\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n");
}

TEST(SinkSessionTest, BareLineFeedsDoNotCrash) {
  Driver d;
  d.TakeOutput();
  // Commands ending in a bare LF are understood.
  EXPECT_THAT(d.Send("EHLO c\nMAIL FROM:<a@x>\nRCPT TO:<b@y>\nDATA\n"), HasSubstr("354 "));
  // Content with a bare LF is refused (not recorded); only <CRLF>.<CRLF> ends it.
  EXPECT_EQ(d.Send("a\nb\n.\nc\r\n.\r\n"),
            "550 5.6.11 Error: bare CR or LF in message content\r\n");
  EXPECT_EQ(d.ended(), 1);
  EXPECT_THAT(d.accepted(), IsEmpty());
  EXPECT_EQ(d.Send("NOOP\n"), "250 2.0.0 Ok\r\n");
}

TEST(SinkSessionTest, LongLinesAndGarbageAreAnswered) {
  SinkOptions options;
  options.max_line = 64;
  Driver d(options);
  d.TakeOutput();
  EXPECT_EQ(d.Send(std::string(200, 'x'), 50), "");
  EXPECT_EQ(d.Send("xx\r\nNOOP\r\n"), "500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n");
  EXPECT_THAT(d.Send("FOO\r\n"), StartsWith("500 "));
  EXPECT_THAT(d.Send("RCPT TO:<b@y>\r\n"), StartsWith("503 "));
  EXPECT_THAT(d.Send("DATA\r\n"), StartsWith("503 "));
  EXPECT_THAT(d.Send(std::string("\0\r\n\xff\xfe\r\n", 7)), StartsWith("500 "));
}

TEST(SinkSessionTest, NonAsciiAddressNeedsSmtputf8) {
  Driver d;
  d.Send("EHLO c\r\n");
  EXPECT_THAT(d.Send("MAIL FROM:<j\xC3\xB6rg@x>\r\n"), StartsWith("553 5.6.7"));
  EXPECT_THAT(d.Send("MAIL FROM:<j\xC3\xB6rg@x> SMTPUTF8\r\n"), StartsWith("250 "));
  EXPECT_THAT(d.Send("RCPT TO:<\xC3\xA5@y>\r\n"), StartsWith("250 "));
}

TEST(SinkSessionTest, GreetingConfigured) {
  SinkOptions refused;
  refused.greeting = "554 5.3.2 go away";
  Driver d(refused);
  EXPECT_EQ(d.TakeOutput(), "554 5.3.2 go away\r\n");
  EXPECT_EQ(d.Send("EHLO c\r\n"), "503 5.5.1 Error: no SMTP service here\r\n");
  EXPECT_EQ(d.Send("QUIT\r\n"), "221 2.0.0 Bye\r\n");

  SinkOptions busy;
  busy.greeting = "421 4.3.2 busy";
  SinkSession s(&busy);
  std::string out;
  s.Start(&out);
  EXPECT_EQ(out, "421 4.3.2 busy\r\n");
  EXPECT_EQ(s.Process(&out), Event::kClose);
}

TEST(SinkSessionTest, DrainingRefusesNewTransactionsOnly) {
  Driver d;
  d.Send(std::string(kEnvelope) + "DATA\r\n");
  d.session().SetDraining();
  EXPECT_EQ(d.Send("x\r\n.\r\n"), "250 2.0.0 Ok: queued\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@x>\r\n"), "421 4.3.2 Service shutting down\r\n");
  EXPECT_EQ(d.last(), Event::kClose);
  EXPECT_EQ(d.Send("NOOP\r\n"), "");
}

TEST(SinkSessionTest, ShutdownCloses) {
  Driver d;
  d.Send("EHLO c\r\n");
  std::string out;
  d.session().Shutdown(&out);
  EXPECT_EQ(out, "421 4.3.2 Service shutting down\r\n");
  EXPECT_EQ(d.session().Process(&out), Event::kClose);
}

TEST(SinkSessionTest, JsonRecord) {
  SinkMessage m;
  m.helo = "c.test";
  m.esmtp = true;
  m.mail_from = "a\"b@x";
  m.mail_params = {{"SIZE", "3"}, {"SMTPUTF8", ""}};
  m.rcpt = {"b@y", "bad\xff@y"};
  m.rcpt_params = {{{"NOTIFY", "NEVER"}}, {}};
  m.size = 3;
  m.sha256_hex = "ab";
  EXPECT_EQ(
      SinkMessageJson(m),
      "{\"helo\":\"c.test\",\"esmtp\":true,\"mail_from\":\"a\\\"b@x\","
      "\"mail_params\":{\"SIZE\":\"3\",\"SMTPUTF8\":\"\"},\"rcpt\":[\"b@y\",\"bad\xEF\xBF\xBD@y\"],"
      "\"rcpt_params\":[{\"NOTIFY\":\"NEVER\"},{}],\"transfer\":\"DATA\",\"size\":3,"
      "\"sha256\":\"ab\",\"tls\":null}");
  m.bdat = true;
  m.tls = SinkTlsInfo{"TLSv1.3", "TLS_AES_128_GCM_SHA256", ""};
  EXPECT_THAT(SinkMessageJson(m),
              HasSubstr("\"transfer\":\"BDAT\",\"size\":3,\"sha256\":\"ab\",\"tls\":{\"version\":"
                        "\"TLSv1.3\",\"cipher\":\"TLS_AES_128_GCM_SHA256\",\"sni\":null}}"));
}

TEST(SinkSessionTest, ValidateReplyLine) {
  EXPECT_TRUE(ValidateReplyLine("451 4.3.0 try later").ok());
  EXPECT_TRUE(ValidateReplyLine("250").ok());
  EXPECT_FALSE(ValidateReplyLine("45 x").ok());
  EXPECT_FALSE(ValidateReplyLine("651 x").ok());
  EXPECT_FALSE(ValidateReplyLine("451-x").ok());
  EXPECT_FALSE(ValidateReplyLine("451 a\r\nb").ok());
}

}  // namespace
}  // namespace postern::bench

namespace postern::bench {
namespace {

TEST(SinkSessionTest, KeptContentIsTheUnstuffedMessageForDataAndBdat) {
  SinkOptions options;
  options.keep_content = true;
  Driver d(options);
  d.TakeOutput();
  d.Send(std::string(kEnvelope) + "DATA\r\n");
  d.Send("Subject: x\r\n..dot\r\n.\r\n", 3);
  d.Send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT 5 LAST\r\nab\r\nc");
  ASSERT_EQ(d.accepted().size(), 2u);
  EXPECT_EQ(d.accepted()[0].content, "Subject: x\r\n.dot\r\n");
  EXPECT_EQ(d.accepted()[1].content, "ab\r\nc");
  EXPECT_THAT(SinkMessageJson(d.accepted()[0]),
              HasSubstr("\"content\":\"Subject: x\\u000d\\u000a"));
  SinkOptions plain;
  Driver p(plain);
  p.Send(std::string(kEnvelope) + "DATA\r\nhi\r\n.\r\n");
  ASSERT_EQ(p.accepted().size(), 1u);
  EXPECT_TRUE(p.accepted()[0].content.empty()) << "benchmarks keep nothing";
}

}  // namespace
}  // namespace postern::bench
