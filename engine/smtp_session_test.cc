#include "engine/smtp_session.h"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace postern::engine {
namespace {

using Event = SmtpSession::Event;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

constexpr std::string_view kUntrustedIp = "203.0.113.5";
constexpr std::string_view kTrustedIp = "192.0.2.9";

absl::Time FixedTime() {
  return absl::FromCivil(absl::CivilSecond(2026, 11, 23, 8, 40, 58), absl::UTCTimeZone());
}

// Drives a session the way the connection glue does: feed bytes, process,
// spool whatever completes (synchronously, with a fixed id and time).
class SessionDriver {
 public:
  explicit SessionDriver(SessionLimits limits = {}, std::string_view client_ip = kUntrustedIp)
      : policy_(*RelayPolicy::Create({"example.com", ".example.net"}, {"192.0.2.0/24"})) {
    SessionContext context;
    context.hostname = "mx.test";
    context.listener = "mx";
    context.client_ip = std::string(client_ip);
    context.client_port = 40000;
    context.relay = &policy_;
    context.limits = limits;
    session_ = std::make_unique<SmtpSession>(std::move(context));
  }

  std::string Start() {
    std::string out;
    session_->Start(&out);
    return out;
  }

  // Feeds `bytes` and processes until the session needs input or closes.
  std::string Send(std::string_view bytes) {
    session_->Receive(bytes);
    return Pump();
  }

  std::string Pump() {
    std::string out;
    for (;;) {
      last_event_ = session_->Process(&out);
      if (last_event_ != Event::kSpool) break;
      messages_.push_back(session_->TakeMessage(queue_id_, FixedTime()));
      // Until SpoolDone, nothing more is processed (pipelined input waits).
      EXPECT_EQ(session_->Process(&out), Event::kWaitSpool);
      if (hold_spool_) return out;
      session_->SpoolDone(spool_status_, queue_id_, &out);
    }
    return out;
  }

  // Common prefix: EHLO, MAIL, one RCPT, DATA (replies checked).
  void OpenData(std::string_view rcpt = "bob@example.com") {
    Start();
    EXPECT_THAT(Send("EHLO client.test\r\n"), StartsWith("250-mx.test\r\n"));
    EXPECT_EQ(Send("MAIL FROM:<alice@client.test>\r\n"), "250 2.1.0 Ok\r\n");
    EXPECT_EQ(Send("RCPT TO:<" + std::string(rcpt) + ">\r\n"), "250 2.1.5 Ok\r\n");
    EXPECT_EQ(Send("DATA\r\n"), "354 End data with <CR><LF>.<CR><LF>\r\n");
  }

  SmtpSession& session() { return *session_; }
  Event last_event() const { return last_event_; }
  std::vector<AcceptedMessage>& messages() { return messages_; }
  void set_spool_status(absl::Status status) { spool_status_ = std::move(status); }
  void set_hold_spool(bool hold) { hold_spool_ = hold; }

 private:
  RelayPolicy policy_;
  std::unique_ptr<SmtpSession> session_;
  Event last_event_ = Event::kNeedInput;
  std::vector<AcceptedMessage> messages_;
  absl::Status spool_status_;
  std::string queue_id_ = "4Xq7mZ";
  bool hold_spool_ = false;
};

constexpr std::string_view kEhloReply =
    "250-mx.test\r\n"
    "250-PIPELINING\r\n"
    "250-SIZE 52428800\r\n"
    "250-8BITMIME\r\n"
    "250-SMTPUTF8\r\n"
    "250 ENHANCEDSTATUSCODES\r\n";

TEST(SmtpSessionTest, Greeting) {
  SessionDriver d;
  EXPECT_EQ(d.Start(), "220 mx.test ESMTP Postern\r\n");
}

TEST(SmtpSessionTest, FullConversation) {
  SessionDriver d;
  d.Start();
  EXPECT_EQ(d.Send("EHLO client.test\r\n"), kEhloReply);
  EXPECT_EQ(d.last_event(), Event::kNeedInput);
  EXPECT_EQ(d.Send("MAIL FROM:<alice@client.test> SIZE=100 BODY=8BITMIME\r\n"), "250 2.1.0 Ok\r\n");
  EXPECT_EQ(d.Send("RCPT TO:<bob@example.com>\r\n"), "250 2.1.5 Ok\r\n");
  EXPECT_EQ(d.Send("DATA\r\n"), "354 End data with <CR><LF>.<CR><LF>\r\n");
  EXPECT_EQ(d.Send("Subject: hi\r\n\r\n..dot\r\nbody\r\n"), "");
  EXPECT_EQ(d.last_event(), Event::kNeedInput);
  EXPECT_EQ(d.Send(".\r\n"), "250 2.0.0 Ok: queued as 4Xq7mZ\r\n");
  EXPECT_EQ(d.Send("QUIT\r\n"), "221 2.0.0 Bye\r\n");
  EXPECT_EQ(d.last_event(), Event::kClose);

  ASSERT_EQ(d.messages().size(), 1u);
  const AcceptedMessage& m = d.messages()[0];
  EXPECT_EQ(m.sender, "alice@client.test");
  EXPECT_THAT(m.recipients, ElementsAre("bob@example.com"));
  EXPECT_EQ(m.helo, "client.test");
  EXPECT_TRUE(m.eight_bit_mime);
  EXPECT_FALSE(m.smtputf8);
  EXPECT_EQ(m.body,
            "Received: from client.test ([203.0.113.5])\r\n"
            "\tby mx.test (Postern) with ESMTP id 4Xq7mZ\r\n"
            "\tfor <bob@example.com>; Mon, 23 Nov 2026 08:40:58 +0000\r\n"
            "Subject: hi\r\n\r\n.dot\r\nbody\r\n");
  EXPECT_EQ(d.session().messages_accepted(), 1u);
  EXPECT_EQ(d.session().commands(), 5u);
  EXPECT_THAT(d.session().TakeRejections(), IsEmpty());
}

TEST(SmtpSessionTest, HeloAndSeveralRecipients) {
  SessionDriver d;
  d.Start();
  EXPECT_EQ(d.Send("HELO old.client\r\n"), "250 mx.test\r\n");
  d.Send("MAIL FROM:<>\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<b@x.example.net>\r\nDATA\r\n");
  EXPECT_EQ(d.Send("hello\r\n.\r\n"), "250 2.0.0 Ok: queued as 4Xq7mZ\r\n");
  ASSERT_EQ(d.messages().size(), 1u);
  const AcceptedMessage& m = d.messages()[0];
  EXPECT_EQ(m.sender, "");
  EXPECT_THAT(m.recipients, ElementsAre("a@example.com", "b@x.example.net"));
  // "with SMTP" after HELO; no "for" with more than one recipient.
  EXPECT_EQ(m.body,
            "Received: from old.client ([203.0.113.5])\r\n"
            "\tby mx.test (Postern) with SMTP id 4Xq7mZ; Mon, 23 Nov 2026 08:40:58 +0000\r\n"
            "hello\r\n");
}

TEST(SmtpSessionTest, PipelinedBatchAnsweredInOrder) {
  SessionDriver d;
  d.Start();
  const std::string out = d.Send(
      "EHLO client.test\r\n"
      "MAIL FROM:<alice@client.test>\r\n"
      "RCPT TO:<bob@example.com>\r\n"
      "RCPT TO:<eve@elsewhere.test>\r\n"
      "RCPT TO:<carol@example.com>\r\n"
      "DATA\r\n"
      "line 1\r\n"
      ".\r\n"
      "MAIL FROM:<alice@client.test>\r\n"
      "NOOP\r\n"
      "QUIT\r\n");
  EXPECT_EQ(out, std::string(kEhloReply) +
                     "250 2.1.0 Ok\r\n"
                     "250 2.1.5 Ok\r\n"
                     "554 5.7.1 Relay access denied\r\n"
                     "250 2.1.5 Ok\r\n"
                     "354 End data with <CR><LF>.<CR><LF>\r\n"
                     "250 2.0.0 Ok: queued as 4Xq7mZ\r\n"
                     "250 2.1.0 Ok\r\n"
                     "250 2.0.0 Ok\r\n"
                     "221 2.0.0 Bye\r\n");
  EXPECT_EQ(d.last_event(), Event::kClose);
  ASSERT_EQ(d.messages().size(), 1u);
  EXPECT_THAT(d.messages()[0].recipients, ElementsAre("bob@example.com", "carol@example.com"));
  EXPECT_THAT(d.session().TakeRejections(), ElementsAre("relay_denied"));
}

TEST(SmtpSessionTest, PipelinedCommandsWaitForSpool) {
  SessionDriver d;
  d.set_hold_spool(true);
  d.OpenData();
  EXPECT_EQ(d.Send("x\r\n.\r\nRSET\r\nNOOP\r\n"), "");
  EXPECT_EQ(d.last_event(), Event::kSpool);
  EXPECT_EQ(d.session().buffered_bytes(), 12u);  // "RSET\r\nNOOP\r\n" kept
  std::string out;
  EXPECT_EQ(d.session().Process(&out), Event::kWaitSpool);
  EXPECT_EQ(out, "");
  d.session().SpoolDone(absl::OkStatus(), "4Xq7mZ", &out);
  EXPECT_EQ(out, "250 2.0.0 Ok: queued as 4Xq7mZ\r\n");
  EXPECT_EQ(d.session().Process(&out), Event::kNeedInput);
  EXPECT_EQ(out, "250 2.0.0 Ok: queued as 4Xq7mZ\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n");
  EXPECT_EQ(d.session().buffered_bytes(), 0u);
}

TEST(SmtpSessionTest, RelayDeniedForUntrustedClient) {
  SessionDriver d;
  d.Start();
  d.Send("EHLO client.test\r\nMAIL FROM:<a@client.test>\r\n");
  EXPECT_EQ(d.Send("RCPT TO:<victim@gmail.test>\r\n"), "554 5.7.1 Relay access denied\r\n");
  // Accepted domains are case-insensitive; subdomains only for ".example.net".
  EXPECT_EQ(d.Send("RCPT TO:<bob@EXAMPLE.com>\r\n"), "250 2.1.5 Ok\r\n");
  EXPECT_EQ(d.Send("RCPT TO:<bob@sub.example.com>\r\n"), "554 5.7.1 Relay access denied\r\n");
  EXPECT_EQ(d.Send("RCPT TO:<bob@deep.sub.example.net>\r\n"), "250 2.1.5 Ok\r\n");
  // A source route cannot smuggle the real destination past the check.
  EXPECT_EQ(d.Send("RCPT TO:<@example.com:victim@gmail.test>\r\n"),
            "554 5.7.1 Relay access denied\r\n");
  // Without a domain, postmaster is not an accepted destination either.
  EXPECT_EQ(d.Send("RCPT TO:<postmaster>\r\n"), "554 5.7.1 Relay access denied\r\n");
  EXPECT_THAT(d.session().TakeRejections(),
              ElementsAre("relay_denied", "relay_denied", "relay_denied", "relay_denied"));
  EXPECT_THAT(d.session().TakeRejections(), IsEmpty());
}

TEST(SmtpSessionTest, TrustedClientMayRelay) {
  SessionDriver d({}, kTrustedIp);
  d.Start();
  d.Send("EHLO client.test\r\nMAIL FROM:<a@client.test>\r\n");
  EXPECT_EQ(d.Send("RCPT TO:<someone@gmail.test>\r\n"), "250 2.1.5 Ok\r\n");
}

TEST(SmtpSessionTest, TooManyRecipients) {
  SessionLimits limits;
  limits.max_recipients = 2;
  limits.max_errors = 2;  // 452 for recipients must not count as errors
  SessionDriver d(limits);
  d.Start();
  const std::string out = d.Send(
      "EHLO c\r\nMAIL FROM:<a@c.test>\r\n"
      "RCPT TO:<r1@example.com>\r\nRCPT TO:<r2@example.com>\r\n"
      "RCPT TO:<r3@example.com>\r\nRCPT TO:<r4@example.com>\r\nRCPT TO:<r5@example.com>\r\n"
      "DATA\r\nx\r\n.\r\n");
  EXPECT_THAT(out, HasSubstr("250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n452 4.5.3 Too many recipients\r\n"
                             "452 4.5.3 Too many recipients\r\n452 4.5.3 Too many recipients\r\n"
                             "354 "));
  EXPECT_THAT(out, HasSubstr("250 2.0.0 Ok: queued as"));
  ASSERT_EQ(d.messages().size(), 1u);
  EXPECT_THAT(d.messages()[0].recipients, ElementsAre("r1@example.com", "r2@example.com"));
  EXPECT_THAT(d.session().TakeRejections(),
              ElementsAre("too_many_recipients", "too_many_recipients", "too_many_recipients"));
}

TEST(SmtpSessionTest, SpoolErrorIsTemporaryAndResetsTransaction) {
  SessionDriver d;
  d.set_spool_status(absl::ResourceExhaustedError("disk full"));
  d.OpenData();
  EXPECT_EQ(d.Send("x\r\n.\r\n"), "452 4.3.1 Insufficient system storage\r\n");
  EXPECT_EQ(d.session().messages_accepted(), 0u);
  EXPECT_THAT(d.session().TakeRejections(), ElementsAre("spool_error"));
  // The transaction is gone: RCPT needs a new MAIL.
  EXPECT_EQ(d.Send("RCPT TO:<bob@example.com>\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
  d.set_spool_status(absl::OkStatus());
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\ny\r\n.\r\n"),
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
            "250 2.0.0 Ok: queued as 4Xq7mZ\r\n");
  EXPECT_EQ(d.session().messages_accepted(), 1u);
}

TEST(SmtpSessionTest, QuitClosesAndIgnoresTheRest) {
  SessionDriver d;
  d.Start();
  EXPECT_EQ(d.Send("QUIT\r\nNOOP\r\n"), "221 2.0.0 Bye\r\n");
  EXPECT_EQ(d.last_event(), Event::kClose);
  EXPECT_EQ(d.Send("NOOP\r\n"), "");
  EXPECT_EQ(d.last_event(), Event::kClose);
  EXPECT_EQ(d.session().buffered_bytes(), 0u);
}

TEST(SmtpSessionTest, SequenceErrors) {
  SessionDriver d;
  d.Start();
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test>\r\n"), "503 5.5.1 Error: send HELO/EHLO first\r\n");
  EXPECT_EQ(d.Send("EHLO c\r\n"), kEhloReply);
  EXPECT_EQ(d.Send("RCPT TO:<b@example.com>\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
  EXPECT_EQ(d.Send("DATA\r\n"), "503 5.5.1 Error: need RCPT command\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test>\r\n"), "250 2.1.0 Ok\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test>\r\n"), "503 5.5.1 Error: nested MAIL command\r\n");
  EXPECT_EQ(d.Send("DATA\r\n"), "554 5.5.1 No valid recipients\r\n");
  EXPECT_EQ(d.Send("RSET\r\n"), "250 2.0.0 Ok\r\n");
  EXPECT_EQ(d.Send("RCPT TO:<b@example.com>\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
  // EHLO again resets the transaction too (RFC 5321 4.1.4).
  d.Send("MAIL FROM:<a@c.test>\r\n");
  d.Send("EHLO c\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test>\r\n"), "250 2.1.0 Ok\r\n");
  EXPECT_THAT(d.session().TakeRejections(),
              ElementsAre("bad_sequence", "bad_sequence", "bad_sequence", "bad_sequence",
                          "bad_sequence", "bad_sequence"));
}

TEST(SmtpSessionTest, OtherCommands) {
  SessionDriver d;
  d.Start();
  EXPECT_EQ(d.Send("NOOP\r\n"), "250 2.0.0 Ok\r\n");
  EXPECT_THAT(d.Send("HELP\r\n"), StartsWith("214 2.0.0 "));
  EXPECT_THAT(d.Send("VRFY bob\r\n"), StartsWith("252 2.0.0 "));
  EXPECT_EQ(d.Send("EXPN staff\r\n"), "502 5.5.1 Command not implemented\r\n");
  EXPECT_EQ(d.Send("STARTTLS\r\n"), "502 5.5.1 Command not implemented\r\n");
  EXPECT_EQ(d.Send("AUTH PLAIN\r\n"), "502 5.5.1 Command not implemented\r\n");
  EXPECT_EQ(d.Send("BDAT 10 LAST\r\n"), "502 5.5.1 Command not implemented\r\n");
  EXPECT_EQ(d.Send("XYZZY\r\n"), "500 5.5.2 Error: command not recognized\r\n");
  EXPECT_EQ(d.Send("EHLO\r\n"), "501 5.5.4 Syntax: EHLO hostname\r\n");
  EXPECT_THAT(d.session().TakeRejections(),
              ElementsAre("not_implemented", "not_implemented", "not_implemented",
                          "not_implemented", "unknown_command", "syntax"));
  EXPECT_EQ(d.session().commands(), 9u);
}

TEST(SmtpSessionTest, BareLfEndsCommandLines) {
  SessionDriver d;
  d.Start();
  EXPECT_EQ(d.Send("NOOP\nNOOP\r\n"), "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n");
}

TEST(SmtpSessionTest, CommandLineTooLong) {
  SessionDriver d;
  d.Start();
  // 510 octets + CRLF = 512: the longest line allowed.
  const std::string ok = "NOOP " + std::string(505, 'x') + "\r\n";
  ASSERT_EQ(ok.size(), 512u);
  EXPECT_EQ(d.Send(ok), "250 2.0.0 Ok\r\n");
  const std::string too_long = "NOOP " + std::string(506, 'x') + "\r\n";
  EXPECT_EQ(d.Send(too_long + "NOOP\r\n"), "500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n");
  EXPECT_THAT(d.session().TakeRejections(), ElementsAre("line_too_long"));
}

TEST(SmtpSessionTest, LongLineWithoutNewlineIsAnsweredAndDiscarded) {
  SessionDriver d;
  d.Start();
  EXPECT_EQ(d.Send(std::string(511, 'x')), "");  // could still end in LF
  EXPECT_EQ(d.Send("x"), "500 5.5.2 Line too long\r\n");
  EXPECT_LE(d.session().buffered_bytes(), 512u);
  EXPECT_EQ(d.Send(std::string(100000, 'y')), "");  // dropped, not buffered
  EXPECT_EQ(d.session().buffered_bytes(), 0u);
  // The rest of the long line, then a real command: one reply only.
  EXPECT_EQ(d.Send("MAIL FROM:<x@y.test>\r\nNOOP\r\n"), "250 2.0.0 Ok\r\n");
}

TEST(SmtpSessionTest, ErrorLimitCloses) {
  SessionLimits limits;
  limits.max_errors = 3;
  SessionDriver d(limits);
  d.Start();
  const std::string out = d.Send("FOO\r\nNOOP\r\nBAR\r\nMAIL FROM:<a@b.test>\r\nNOOP\r\n");
  EXPECT_EQ(out,
            "500 5.5.2 Error: command not recognized\r\n"
            "250 2.0.0 Ok\r\n"
            "500 5.5.2 Error: command not recognized\r\n"
            "503 5.5.1 Error: send HELO/EHLO first\r\n"
            "421 4.7.0 mx.test Error: too many errors\r\n");
  EXPECT_EQ(d.last_event(), Event::kClose);
  EXPECT_THAT(d.session().TakeRejections(),
              ElementsAre("unknown_command", "unknown_command", "bad_sequence", "too_many_errors"));
}

TEST(SmtpSessionTest, ErrorLimitOnPartialLongLine) {
  SessionLimits limits;
  limits.max_errors = 1;
  SessionDriver d(limits);
  d.Start();
  EXPECT_EQ(d.Send(std::string(600, 'x')),
            "500 5.5.2 Line too long\r\n421 4.7.0 mx.test Error: too many errors\r\n");
  EXPECT_EQ(d.last_event(), Event::kClose);
}

TEST(SmtpSessionTest, AcceptedMessageResetsErrorCount) {
  SessionLimits limits;
  limits.max_errors = 2;
  SessionDriver d(limits);
  d.Start();
  EXPECT_EQ(d.Send("FOO\r\n"), "500 5.5.2 Error: command not recognized\r\n");
  d.Send("EHLO c\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n");
  EXPECT_EQ(d.Send("FOO\r\n"), "500 5.5.2 Error: command not recognized\r\n");
  EXPECT_EQ(d.last_event(), Event::kNeedInput);
}

TEST(SmtpSessionTest, BareLfInDataIsRejectedAfterTheRealEnd) {
  SessionDriver d;
  d.OpenData();
  // The smuggling attempt: a fake end, then a second transaction inside DATA.
  const std::string out = d.Send(
      "hello\n.\r\n"
      "MAIL FROM:<ceo@example.com>\r\n"
      "RCPT TO:<victim@example.com>\r\n"
      "DATA\r\n"
      "smuggled\r\n"
      ".\r\n"
      "NOOP\r\n");
  EXPECT_EQ(out, "550 5.6.11 Bare CR or LF not allowed\r\n250 2.0.0 Ok\r\n");
  EXPECT_THAT(d.messages(), IsEmpty());
  EXPECT_THAT(d.session().TakeRejections(), ElementsAre("bare_lf"));
  // The transaction is over.
  EXPECT_EQ(d.Send("RCPT TO:<bob@example.com>\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
}

TEST(SmtpSessionTest, NoSmugglingVariantEndsData) {
  for (std::string_view fake : {"\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r", "\r\n.\r"}) {
    SCOPED_TRACE(testing::PrintToString(std::string(fake)));
    SessionDriver d;
    d.OpenData();
    EXPECT_EQ(d.Send("hi" + std::string(fake) + "MAIL FROM:<ceo@example.com>\r\n"), "");
    EXPECT_EQ(d.last_event(), Event::kNeedInput);
    EXPECT_EQ(d.Send("\r\n.\r\n"), "550 5.6.11 Bare CR or LF not allowed\r\n");
    EXPECT_THAT(d.messages(), IsEmpty());
  }
}

TEST(SmtpSessionTest, BareCrInData) {
  SessionDriver d;
  d.OpenData();
  EXPECT_EQ(d.Send("a\rb\r\n.\r\n"), "550 5.6.11 Bare CR or LF not allowed\r\n");
  EXPECT_THAT(d.messages(), IsEmpty());
}

TEST(SmtpSessionTest, LongTextLineInData) {
  SessionDriver d;
  d.OpenData();
  EXPECT_EQ(d.Send(std::string(999, 'a') + "\r\n.\r\n"), "500 5.5.2 Line too long\r\n");
  EXPECT_THAT(d.messages(), IsEmpty());
  EXPECT_THAT(d.session().TakeRejections(), ElementsAre("line_too_long"));
}

TEST(SmtpSessionTest, MessageSizeLimit) {
  SessionLimits limits;
  limits.max_message_size = 10;
  SessionDriver d(limits);
  d.Start();
  EXPECT_THAT(d.Send("EHLO c\r\n"), HasSubstr("250-SIZE 10\r\n"));
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test> SIZE=11\r\n"),
            "552 5.3.4 Message size exceeds fixed limit\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test> SIZE=99999999999999999999999\r\n"),
            "552 5.3.4 Message size exceeds fixed limit\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test> SIZE=10\r\n"), "250 2.1.0 Ok\r\n");
  d.Send("RCPT TO:<b@example.com>\r\nDATA\r\n");
  EXPECT_EQ(d.Send("0123456789\r\n"), "");  // 12 octets: over, keep reading
  EXPECT_EQ(d.Send("more\r\n.\r\nNOOP\r\n"),
            "552 5.3.4 Message size exceeds fixed limit\r\n250 2.0.0 Ok\r\n");
  EXPECT_THAT(d.messages(), IsEmpty());
  EXPECT_THAT(d.session().TakeRejections(), ElementsAre("too_large", "too_large", "too_large"));
  // Exactly at the limit is fine.
  d.Send("MAIL FROM:<a@c.test>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
  EXPECT_EQ(d.Send("01234567\r\n.\r\n"), "250 2.0.0 Ok: queued as 4Xq7mZ\r\n");
}

TEST(SmtpSessionTest, MailParameters) {
  SessionDriver d;
  d.Start();
  d.Send("EHLO c\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test> SIZE=abc\r\n"), "501 5.5.4 Bad SIZE parameter syntax\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test> BODY=BINARYMIME\r\n"),
            "501 5.5.4 Bad BODY parameter syntax\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test> RET=HDRS\r\n"), "555 5.5.4 Unsupported option: RET\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test> body=7bit\r\n"), "250 2.1.0 Ok\r\n");
  EXPECT_EQ(d.Send("RCPT TO:<b@example.com> NOTIFY=NEVER\r\n"),
            "555 5.5.4 Unsupported option: NOTIFY\r\n");
  EXPECT_EQ(d.Send("RCPT TO:b@example.com\r\n"), "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
}

TEST(SmtpSessionTest, Smtputf8) {
  SessionDriver d;
  d.Start();
  d.Send("EHLO c\r\n");
  const std::string unicode_sender = "j\xc3\xb6rg@c.test";
  EXPECT_EQ(d.Send("MAIL FROM:<" + unicode_sender + ">\r\n"),
            "553 5.6.7 Must declare SMTPUTF8 to send unicode address\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test>\r\n"), "250 2.1.0 Ok\r\n");
  EXPECT_EQ(d.Send("RCPT TO:<b\xc3\xbc@example.com>\r\n"),
            "553 5.6.7 Must declare SMTPUTF8 to send unicode address\r\n");
  d.Send("RSET\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<" + unicode_sender + "> SMTPUTF8\r\n"), "250 2.1.0 Ok\r\n");
  EXPECT_EQ(d.Send("RCPT TO:<b\xc3\xbc@example.com>\r\n"), "250 2.1.5 Ok\r\n");
  d.Send("DATA\r\nx\r\n.\r\n");
  ASSERT_EQ(d.messages().size(), 1u);
  EXPECT_TRUE(d.messages()[0].smtputf8);
  EXPECT_THAT(d.messages()[0].body, HasSubstr("with UTF8SMTP id"));
}

TEST(SmtpSessionTest, TimeoutAndShutdown) {
  {
    SessionDriver d;
    std::string out;
    d.session().Timeout(&out);
    EXPECT_EQ(out, "421 4.4.2 mx.test Error: timeout exceeded\r\n");
    EXPECT_EQ(d.Send("NOOP\r\n"), "");
    EXPECT_EQ(d.last_event(), Event::kClose);
  }
  {
    SessionDriver d;
    d.OpenData();
    std::string out;
    d.session().Shutdown(&out);
    EXPECT_EQ(out, "421 4.3.2 mx.test Service shutting down\r\n");
    EXPECT_EQ(d.Send("x\r\n.\r\n"), "");
    EXPECT_EQ(d.last_event(), Event::kClose);
  }
}

// A whole conversation gives the same replies however the bytes are cut.
TEST(SmtpSessionTest, ChunkingDoesNotChangeReplies) {
  const std::string input =
      "EHLO c\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<x@y.test>\r\n"
      "DATA\r\n..a\r\nb\r\n.\r\nFOO\r\n" +
      std::string(600, 'z') + "\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<b@example.com>\r\n" +
      "DATA\r\nbad\n.\n\r\n.\r\nQUIT\r\n";
  SessionDriver whole;
  whole.Start();
  const std::string expected = whole.Send(input);
  EXPECT_THAT(expected, HasSubstr("250 2.0.0 Ok: queued"));
  EXPECT_THAT(expected, HasSubstr("550 5.6.11"));
  EXPECT_THAT(expected, HasSubstr("500 5.5.2 Line too long"));
  for (size_t chunk : {1, 2, 3, 7, 64, 511, 512, 513}) {
    SessionDriver d;
    d.Start();
    std::string out;
    for (size_t i = 0; i < input.size(); i += chunk) out += d.Send(input.substr(i, chunk));
    EXPECT_EQ(out, expected) << "chunk " << chunk;
    ASSERT_EQ(d.messages().size(), 1u);
    EXPECT_EQ(d.messages()[0].body, whole.messages()[0].body);
  }
}

}  // namespace
}  // namespace postern::engine
