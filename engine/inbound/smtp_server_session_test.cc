#include "engine/inbound/smtp_server_session.h"

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "engine/inbound/inbound_policy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace postern::engine {
namespace {

using Event = SmtpServerSession::Event;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAre;

constexpr std::string_view kUntrustedIp = "203.0.113.5";
constexpr std::string_view kTrustedIp = "192.0.2.9";

absl::Time FixedTime() {
  return absl::FromCivil(absl::CivilSecond(2026, 11, 23, 8, 40, 58), absl::UTCTimeZone());
}

// The TLS facts a test handshake "negotiates".
TlsFacts Tls13(std::string cert_sha256 = "", std::string spki_sha256 = "") {
  TlsFacts facts;
  facts.version = "TLSv1.3";
  facts.cipher = "TLS_AES_256_GCM_SHA384";
  facts.bits = 256;
  facts.alg_bits = 256;
  facts.peer_cert_sha256 = std::move(cert_sha256);
  facts.peer_spki_sha256 = std::move(spki_sha256);
  return facts;
}

// Drives a session the way the connection glue does: feed bytes, process,
// spool whatever completes (synchronously, with a fixed id and time) and
// answer credential checks with a fake user database: alice / s3cret, who
// owns client.test and the subdomains of corp.test.
class SessionDriver {
 public:
  explicit SessionDriver(SessionLimits limits = {}, std::string_view client_ip = kUntrustedIp,
                         const std::function<void(SessionContext*)>& configure = nullptr)
      : policy_(*RelayPolicy::Create({"example.com", ".example.net"}, {"192.0.2.0/24"})) {
    SessionContext context;
    context.hostname = "mx.test";
    context.listener = "mx";
    context.client_ip = std::string(client_ip);
    context.client_port = 40000;
    context.relay = &policy_;
    context.limits = limits;
    if (configure) configure(&context);
    session_ = std::make_unique<SmtpServerSession>(std::move(context));
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
      if (last_event_ == Event::kAuthCheck) {
        auth_requests_.push_back(session_->TakeAuthRequest());
        EXPECT_EQ(session_->Process(&out), Event::kWaitAuth);
        if (hold_auth_) return out;
        std::vector<std::string> domains;
        const AuthOutcome outcome = auth_outcome_ ? *auth_outcome_ : Check(auth_requests_.back());
        if (outcome == AuthOutcome::kOk) domains = {"client.test", ".corp.test"};
        session_->AuthDone(outcome, domains, &out);
        continue;
      }
      if (last_event_ != Event::kSpool) break;
      messages_.push_back(session_->TakeMessage(queue_id_, FixedTime()));
      // Until SpoolDone, nothing more is processed (pipelined input waits).
      EXPECT_EQ(session_->Process(&out), Event::kWaitSpool);
      if (hold_spool_) return out;
      session_->SpoolDone(spool_status_, queue_id_, &out);
    }
    return out;
  }

  // STARTTLS, its 220, and a successful handshake.
  void StartTls(const TlsFacts& facts = Tls13()) {
    EXPECT_EQ(Send("STARTTLS\r\n"), "220 2.0.0 Ready to start TLS\r\n");
    EXPECT_EQ(last_event_, Event::kStartTls);
    session_->TlsStarted(facts);
  }

  // Common prefix: EHLO, MAIL, one RCPT, DATA (replies checked).
  void OpenData(std::string_view rcpt = "bob@example.com") {
    Start();
    EXPECT_THAT(Send("EHLO client.test\r\n"), StartsWith("250-mx.test\r\n"));
    EXPECT_EQ(Send("MAIL FROM:<alice@client.test>\r\n"), "250 2.1.0 Ok\r\n");
    EXPECT_EQ(Send("RCPT TO:<" + std::string(rcpt) + ">\r\n"), "250 2.1.5 Ok\r\n");
    EXPECT_EQ(Send("DATA\r\n"), "354 End data with <CR><LF>.<CR><LF>\r\n");
  }

  SmtpServerSession& session() { return *session_; }
  Event last_event() const { return last_event_; }
  std::vector<AcceptedMessage>& messages() { return messages_; }
  std::vector<AuthRequest>& auth_requests() { return auth_requests_; }
  void set_spool_status(absl::Status status) { spool_status_ = std::move(status); }
  void set_hold_spool(bool hold) { hold_spool_ = hold; }
  void set_hold_auth(bool hold) { hold_auth_ = hold; }
  void set_auth_outcome(AuthOutcome outcome) { auth_outcome_ = outcome; }

 private:
  static AuthOutcome Check(const AuthRequest& request) {
    return request.username == "alice" && request.password == "s3cret" ? AuthOutcome::kOk
                                                                       : AuthOutcome::kBad;
  }

  RelayPolicy policy_;
  std::unique_ptr<SmtpServerSession> session_;
  Event last_event_ = Event::kNeedInput;
  std::vector<AcceptedMessage> messages_;
  std::vector<AuthRequest> auth_requests_;
  absl::Status spool_status_;
  std::string queue_id_ = "4Xq7mZ";
  bool hold_spool_ = false;
  bool hold_auth_ = false;
  std::optional<AuthOutcome> auth_outcome_;
};

constexpr std::string_view kEhloReply =
    "250-mx.test\r\n"
    "250-PIPELINING\r\n"
    "250-SIZE 52428800\r\n"
    "250-8BITMIME\r\n"
    "250-SMTPUTF8\r\n"
    "250-CHUNKING\r\n"
    "250-DSN\r\n"
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
  // The chunk is consumed, even though there is no transaction for it.
  EXPECT_EQ(d.Send("BDAT 6 LAST\r\nQUIT\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
  EXPECT_EQ(d.Send("XYZZY\r\n"), "500 5.5.2 Error: command not recognized\r\n");
  EXPECT_EQ(d.Send("EHLO\r\n"), "501 5.5.4 Syntax: EHLO hostname\r\n");
  EXPECT_THAT(d.session().TakeRejections(),
              ElementsAre("not_implemented", "not_implemented", "not_implemented", "bad_sequence",
                          "unknown_command", "syntax"));
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
  // BINARYMIME (RFC 3030) is known but not offered.
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test> BODY=BINARYMIME\r\n"),
            "555 5.5.4 Unsupported option: BODY=BINARYMIME\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test> BODY=9BIT\r\n"),
            "501 5.5.4 Bad BODY parameter syntax\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test> MT-PRIORITY=3\r\n"),
            "555 5.5.4 Unsupported option: MT-PRIORITY\r\n");
  // AUTH= only where AUTH is offered.
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test> AUTH=<>\r\n"), "555 5.5.4 Unsupported option: AUTH\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test> body=7bit\r\n"), "250 2.1.0 Ok\r\n");
  EXPECT_EQ(d.Send("RCPT TO:<b@example.com> X-FOO=1\r\n"),
            "555 5.5.4 Unsupported option: X-FOO\r\n");
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

// ---------------------------------------------------------------------------
// STARTTLS (RFC 3207), implicit TLS, AUTH (RFC 4954), inbound TLS policy.

using TlsMode = SessionContext::TlsMode;

std::string B64(std::string_view raw) {
  return absl::Base64Escape(absl::string_view(raw.data(), raw.size()));
}

// "AUTH PLAIN" response for authcid/password, empty authzid.
std::string Plain(std::string_view user, std::string_view password) {
  return B64(std::string("\0", 1) + std::string(user) + std::string("\0", 1) +
             std::string(password));
}

std::function<void(SessionContext*)> Listener(TlsMode mode, bool auth = false,
                                              const InboundPolicy* inbound = nullptr,
                                              bool sender_login_match = false) {
  return [=](SessionContext* c) {
    c->tls_mode = mode;
    c->auth_enabled = auth;
    c->inbound = inbound;
    c->sender_login_match = sender_login_match;
  };
}

constexpr std::string_view kEhloOfferReply =
    "250-mx.test\r\n"
    "250-PIPELINING\r\n"
    "250-SIZE 52428800\r\n"
    "250-8BITMIME\r\n"
    "250-SMTPUTF8\r\n"
    "250-CHUNKING\r\n"
    "250-DSN\r\n"
    "250-STARTTLS\r\n"
    "250 ENHANCEDSTATUSCODES\r\n";

constexpr std::string_view kEhloTlsAuthReply =
    "250-mx.test\r\n"
    "250-PIPELINING\r\n"
    "250-SIZE 52428800\r\n"
    "250-8BITMIME\r\n"
    "250-SMTPUTF8\r\n"
    "250-CHUNKING\r\n"
    "250-DSN\r\n"
    "250-AUTH PLAIN LOGIN\r\n"
    "250 ENHANCEDSTATUSCODES\r\n";

constexpr std::string_view kPlainReceived =
    "Received: from client.test ([203.0.113.5])\r\n"
    "\tby mx.test (Postern) with ESMTP id 4Xq7mZ\r\n"
    "\tfor <bob@example.com>; Mon, 23 Nov 2026 08:40:58 +0000\r\n";

// A TLS session on an `offer` listener with AUTH, after EHLO.
SessionDriver TlsSessionWithAuth(std::string_view client_ip = kUntrustedIp,
                                 const InboundPolicy* inbound = nullptr,
                                 bool sender_login_match = false) {
  return SessionDriver({}, client_ip, Listener(TlsMode::kOffer, true, inbound, sender_login_match));
}

TEST(SmtpSessionTlsTest, EhloOffersStartTlsOnlyBeforeTls) {
  for (TlsMode mode : {TlsMode::kOffer, TlsMode::kRequire}) {
    SessionDriver d({}, kUntrustedIp, Listener(mode, /*auth=*/true));
    d.Start();
    EXPECT_EQ(d.Send("EHLO client.test\r\n"), kEhloOfferReply);  // no AUTH in plaintext
    d.StartTls();
    EXPECT_EQ(d.Send("EHLO client.test\r\n"), kEhloTlsAuthReply);  // no STARTTLS inside TLS
    EXPECT_TRUE(d.session().tls_active());
  }
  SessionDriver none;  // tls: none, auth: none
  none.Start();
  EXPECT_EQ(none.Send("EHLO client.test\r\n"), kEhloReply);
}

TEST(SmtpSessionTlsTest, OfferAcceptsPlaintextThenUpgrades) {
  SessionDriver d({}, kUntrustedIp, Listener(TlsMode::kOffer));
  d.Start();
  d.Send("EHLO client.test\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<alice@client.test>\r\n"), "250 2.1.0 Ok\r\n");
  d.StartTls();
  EXPECT_EQ(d.last_event(), Event::kStartTls);
  // The session forgot EHLO and the transaction (RFC 3207 4.2).
  EXPECT_EQ(d.Send("RCPT TO:<bob@example.com>\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<alice@client.test>\r\n"),
            "503 5.5.1 Error: send HELO/EHLO first\r\n");
  d.Send("EHLO client.test\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<alice@client.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
                   "hi\r\n.\r\n"),
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
            "250 2.0.0 Ok: queued as 4Xq7mZ\r\n");
  ASSERT_EQ(d.messages().size(), 1u);
  EXPECT_EQ(d.messages()[0].body,
            "Received: from client.test ([203.0.113.5])\r\n"
            "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n"
            "\tby mx.test (Postern) with ESMTPS tls TLS_AES_256_GCM_SHA384 id 4Xq7mZ\r\n"
            "\tfor <bob@example.com>; Mon, 23 Nov 2026 08:40:58 +0000\r\n"
            "hi\r\n");
  EXPECT_EQ(d.session().discarded_after_starttls(), 0u);
}

TEST(SmtpSessionTlsTest, PlaintextMessageHasNoTlsInReceived) {
  SessionDriver d({}, kUntrustedIp, Listener(TlsMode::kOffer));
  d.OpenData();
  d.Send("x\r\n.\r\n");
  ASSERT_EQ(d.messages().size(), 1u);
  EXPECT_EQ(d.messages()[0].body, std::string(kPlainReceived) + "x\r\n");
  EXPECT_FALSE(d.session().tls_active());
}

TEST(SmtpSessionTlsTest, CommandsPipelinedBehindStartTlsAreDiscarded) {
  SessionDriver d({}, kUntrustedIp, Listener(TlsMode::kOffer));
  d.Start();
  d.Send("EHLO client.test\r\n");
  // CVE-2011-0411: the injected MAIL must never be answered or acted upon.
  const std::string injected = "MAIL FROM:<evil@x>\r\n";
  EXPECT_EQ(d.Send("STARTTLS\r\n" + injected), "220 2.0.0 Ready to start TLS\r\n");
  EXPECT_EQ(d.last_event(), Event::kStartTls);
  EXPECT_EQ(d.session().discarded_after_starttls(), injected.size());
  EXPECT_EQ(d.session().buffered_bytes(), 0u);
  // Until the handshake is done nothing is read, and late plaintext is
  // dropped too.
  EXPECT_EQ(d.Send("RCPT TO:<bob@example.com>\r\n"), "");
  EXPECT_EQ(d.last_event(), Event::kStartTls);
  EXPECT_EQ(d.session().discarded_after_starttls(), injected.size() + 27);
  d.session().TlsStarted(Tls13());
  d.Send("EHLO client.test\r\n");
  // Had the MAIL been interpreted, this RCPT would succeed.
  EXPECT_EQ(d.Send("RCPT TO:<bob@example.com>\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
  EXPECT_EQ(d.session().commands(), 4u);  // EHLO, STARTTLS, EHLO, RCPT
}

TEST(SmtpSessionTlsTest, StartTlsErrors) {
  SessionDriver none;
  none.Start();
  EXPECT_EQ(none.Send("STARTTLS\r\n"), "502 5.5.1 Command not implemented\r\n");

  SessionDriver d({}, kUntrustedIp, Listener(TlsMode::kOffer));
  d.Start();
  EXPECT_EQ(d.Send("STARTTLS now\r\n"), "501 5.5.4 Syntax: STARTTLS\r\n");
  EXPECT_EQ(d.last_event(), Event::kNeedInput);
  d.StartTls();
  EXPECT_EQ(d.Send("STARTTLS\r\n"), "554 5.5.1 Error: TLS already active\r\n");
  EXPECT_EQ(d.last_event(), Event::kNeedInput);
  EXPECT_THAT(d.session().TakeRejections(), ElementsAre("syntax", "bad_sequence"));
}

TEST(SmtpSessionTlsTest, RequireRefusesMailCommandsBeforeStartTls) {
  SessionDriver d({}, kUntrustedIp, Listener(TlsMode::kRequire));
  d.Start();
  EXPECT_EQ(d.Send("EHLO client.test\r\n"), kEhloOfferReply);
  EXPECT_EQ(d.Send("NOOP\r\nRSET\r\n"), "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n");
  const std::string must = "530 5.7.0 Must issue a STARTTLS command first\r\n";
  EXPECT_EQ(d.Send("MAIL FROM:<alice@client.test>\r\n"), must);
  EXPECT_EQ(d.Send("RCPT TO:<bob@example.com>\r\n"), must);
  EXPECT_EQ(d.Send("DATA\r\n"), must);
  // The chunk's octets are consumed first, then refused.
  EXPECT_EQ(d.Send("BDAT 10 LAST\r\n"), "");
  EXPECT_EQ(d.Send("MAIL FROM:"), must);
  // This listener has no AUTH: the TLS requirement is the answer.
  EXPECT_EQ(d.Send("AUTH PLAIN " + Plain("alice", "s3cret") + "\r\n"), must);
  EXPECT_THAT(
      d.session().TakeRejections(),
      ElementsAre("tls_required", "tls_required", "tls_required", "tls_required", "tls_required"));
  d.StartTls();
  d.Send("EHLO client.test\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<alice@client.test>\r\n"), "250 2.1.0 Ok\r\n");
  EXPECT_EQ(d.Send("AUTH PLAIN " + Plain("alice", "s3cret") + "\r\n"),
            "502 5.5.1 Command not implemented\r\n");
}

TEST(SmtpSessionTlsTest, ImplicitTls) {
  SessionDriver d({}, kUntrustedIp, Listener(TlsMode::kImplicit, /*auth=*/true));
  d.session().TlsStarted(Tls13());  // the handshake comes before the greeting
  EXPECT_EQ(d.Start(), "220 mx.test ESMTP Postern\r\n");
  EXPECT_TRUE(d.session().tls_active());
  EXPECT_EQ(d.Send("EHLO client.test\r\n"), kEhloTlsAuthReply);
  EXPECT_EQ(d.Send("STARTTLS\r\n"), "554 5.5.1 Error: TLS already active\r\n");
  d.Send("MAIL FROM:<alice@client.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nx\r\n.\r\n");
  ASSERT_EQ(d.messages().size(), 1u);
  EXPECT_THAT(d.messages()[0].body,
              HasSubstr("\tby mx.test (Postern) with ESMTPS tls TLS_AES_256_GCM_SHA384 id "));
}

TEST(SmtpSessionTlsTest, ImplicitWithoutHandshakeStaysClosedToMail) {
  // A glue bug (no TlsStarted) must not open a plaintext path.
  SessionDriver d({}, kUntrustedIp, Listener(TlsMode::kImplicit));
  d.Start();
  EXPECT_EQ(d.Send("EHLO client.test\r\n"), kEhloReply);  // no STARTTLS either
  EXPECT_EQ(d.Send("MAIL FROM:<alice@client.test>\r\n"),
            "530 5.7.0 Must issue a STARTTLS command first\r\n");
  EXPECT_EQ(d.Send("STARTTLS\r\n"), "502 5.5.1 Command not implemented\r\n");
}

TEST(SmtpSessionTlsTest, TimeoutDuringHandshakeSendsNothing) {
  SessionDriver d({}, kUntrustedIp, Listener(TlsMode::kOffer));
  d.Start();
  EXPECT_EQ(d.Send("STARTTLS\r\n"), "220 2.0.0 Ready to start TLS\r\n");
  std::string out;
  d.session().Timeout(&out);
  EXPECT_EQ(out, "");
  EXPECT_EQ(d.session().Process(&out), Event::kClose);
}

TEST(SmtpSessionTlsTest, ReceivedHeaderTlsNamesAreSanitised) {
  SessionDriver d({}, kUntrustedIp, Listener(TlsMode::kOffer));
  d.Start();
  TlsFacts facts = Tls13();
  facts.cipher = "AES\r\nX-Evil: 1";
  facts.version = "";
  d.StartTls(facts);
  d.Send("EHLO c\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nx\r\n.\r\n");
  ASSERT_EQ(d.messages().size(), 1u);
  EXPECT_THAT(d.messages()[0].body,
              StartsWith("Received: from c ([203.0.113.5])\r\n"
                         "\t(using unknown with cipher AESX-Evil1 (256/256 bits))\r\n"
                         "\tby mx.test (Postern) with ESMTPS tls AESX-Evil1 id 4Xq7mZ\r\n"));
}

TEST(SmtpSessionTlsTest, Utf8SmtpOverTls) {
  SessionDriver d({}, kUntrustedIp, Listener(TlsMode::kOffer));
  d.Start();
  d.StartTls();
  d.Send(
      "EHLO c\r\nMAIL FROM:<j\xc3\xb6rg@c.test> SMTPUTF8\r\nRCPT TO:<bob@example.com>\r\n"
      "DATA\r\nx\r\n.\r\n");
  ASSERT_EQ(d.messages().size(), 1u);
  EXPECT_THAT(d.messages()[0].body,
              HasSubstr("\tby mx.test (Postern) with UTF8SMTPS tls TLS_AES_256_GCM_SHA384 id "
                        "4Xq7mZ\r\n"));
}

TEST(SmtpSessionAuthTest, AuthBeforeTlsNeedsEncryption) {
  for (TlsMode mode : {TlsMode::kOffer, TlsMode::kRequire}) {
    SessionDriver d({}, kUntrustedIp, Listener(mode, /*auth=*/true));
    d.Start();
    d.Send("EHLO client.test\r\n");
    EXPECT_EQ(d.Send("AUTH PLAIN " + Plain("alice", "s3cret") + "\r\n"),
              "538 5.7.11 Encryption required for requested authentication mechanism\r\n");
    EXPECT_EQ(d.Send("AUTH LOGIN\r\n"),
              "538 5.7.11 Encryption required for requested authentication mechanism\r\n");
    EXPECT_THAT(d.auth_requests(), IsEmpty());
    EXPECT_THAT(d.session().TakeRejections(),
                ElementsAre("auth_required_tls", "auth_required_tls"));
  }
}

TEST(SmtpSessionAuthTest, AuthNotOfferedWhenDisabled) {
  SessionDriver d({}, kUntrustedIp, Listener(TlsMode::kOffer));
  d.Start();
  d.StartTls();
  EXPECT_EQ(d.Send("EHLO client.test\r\n").find("AUTH"), std::string::npos);
  EXPECT_EQ(d.Send("AUTH PLAIN " + Plain("alice", "s3cret") + "\r\n"),
            "502 5.5.1 Command not implemented\r\n");
  // Without AUTH offered, the AUTH= MAIL parameter is unknown too.
  EXPECT_EQ(d.Send("MAIL FROM:<a@client.test> AUTH=<>\r\n"),
            "555 5.5.4 Unsupported option: AUTH\r\n");
}

TEST(SmtpSessionAuthTest, PlainWithInitialResponseAllowsRelay) {
  SessionDriver d = TlsSessionWithAuth();
  d.Start();
  d.StartTls();
  d.Send("EHLO client.test\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@client.test>\r\nRCPT TO:<x@gmail.test>\r\nRSET\r\n"),
            "250 2.1.0 Ok\r\n554 5.7.1 Relay access denied\r\n250 2.0.0 Ok\r\n");
  EXPECT_EQ(d.Send("AUTH PLAIN " + Plain("alice", "s3cret") + "\r\n"),
            "235 2.7.0 Authentication successful\r\n");
  ASSERT_EQ(d.auth_requests().size(), 1u);
  EXPECT_EQ(d.auth_requests()[0].username, "alice");
  EXPECT_EQ(d.auth_requests()[0].password, "s3cret");
  EXPECT_TRUE(d.session().authenticated());
  // RFC 4954 5: AUTH= is accepted (and ignored) once AUTH is offered.
  EXPECT_EQ(d.Send("MAIL FROM:<alice@client.test> AUTH=<>\r\nRCPT TO:<x@gmail.test>\r\n"
                   "DATA\r\nhi\r\n.\r\n"),
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
            "250 2.0.0 Ok: queued as 4Xq7mZ\r\n");
  ASSERT_EQ(d.messages().size(), 1u);
  // ESMTPSA, and never the login name (privacy).
  EXPECT_EQ(d.messages()[0].body,
            "Received: from client.test ([203.0.113.5])\r\n"
            "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n"
            "\tby mx.test (Postern) with ESMTPSA tls TLS_AES_256_GCM_SHA384 id 4Xq7mZ\r\n"
            "\tfor <x@gmail.test>; Mon, 23 Nov 2026 08:40:58 +0000\r\n"
            "hi\r\n");
  EXPECT_THAT(d.session().TakeRejections(), ElementsAre("relay_denied"));
}

TEST(SmtpSessionAuthTest, Utf8SmtpAuthenticated) {
  SessionDriver d = TlsSessionWithAuth();
  d.Start();
  d.StartTls();
  d.Send("EHLO client.test\r\nAUTH PLAIN " + Plain("alice", "s3cret") + "\r\n");
  d.Send(
      "MAIL FROM:<j\xc3\xb6rg@client.test> SMTPUTF8\r\nRCPT TO:<x@gmail.test>\r\n"
      "DATA\r\nx\r\n.\r\n");
  ASSERT_EQ(d.messages().size(), 1u);
  EXPECT_THAT(d.messages()[0].body, HasSubstr(" with UTF8SMTPSA tls TLS_AES_256_GCM_SHA384 id "));
}

TEST(SmtpSessionAuthTest, PlainWithContinuation) {
  SessionDriver d = TlsSessionWithAuth();
  d.Start();
  d.StartTls();
  d.Send("EHLO client.test\r\n");
  EXPECT_EQ(d.Send("AUTH plain\r\n"), "334 \r\n");
  EXPECT_THAT(d.auth_requests(), IsEmpty());
  // The response line is not a command, whatever it looks like.
  EXPECT_EQ(d.Send(Plain("alice", "s3cret") + "\r\n"), "235 2.7.0 Authentication successful\r\n");
  EXPECT_EQ(d.session().commands(), 3u);  // STARTTLS, EHLO, AUTH
  // An authorisation identity equal to the user is fine.
  SessionDriver e = TlsSessionWithAuth();
  e.Start();
  e.StartTls();
  e.Send("EHLO client.test\r\n");
  EXPECT_EQ(e.Send("AUTH PLAIN " + B64(std::string("alice\0alice\0s3cret", 18)) + "\r\n"),
            "235 2.7.0 Authentication successful\r\n");
}

TEST(SmtpSessionAuthTest, Login) {
  SessionDriver d = TlsSessionWithAuth();
  d.Start();
  d.StartTls();
  d.Send("EHLO client.test\r\n");
  EXPECT_EQ(d.Send("AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
  EXPECT_EQ(d.Send(B64("alice") + "\r\n"), "334 UGFzc3dvcmQ6\r\n");
  EXPECT_EQ(d.Send(B64("s3cret") + "\r\n"), "235 2.7.0 Authentication successful\r\n");
  EXPECT_TRUE(d.session().authenticated());

  // The user name may come with the command.
  SessionDriver e = TlsSessionWithAuth();
  e.Start();
  e.StartTls();
  e.Send("EHLO client.test\r\n");
  EXPECT_EQ(e.Send("AUTH LOGIN " + B64("alice") + "\r\n"), "334 UGFzc3dvcmQ6\r\n");
  EXPECT_EQ(e.Send(B64("wrong") + "\r\n"), "535 5.7.8 Authentication credentials invalid\r\n");
  ASSERT_EQ(e.auth_requests().size(), 1u);
  EXPECT_EQ(e.auth_requests()[0].username, "alice");
  EXPECT_EQ(e.auth_requests()[0].password, "wrong");
}

TEST(SmtpSessionAuthTest, FailureThenRetry) {
  SessionDriver d = TlsSessionWithAuth();
  d.Start();
  d.StartTls();
  d.Send("EHLO client.test\r\n");
  EXPECT_EQ(d.Send("AUTH PLAIN " + Plain("alice", "guess") + "\r\n"),
            "535 5.7.8 Authentication credentials invalid\r\n");
  EXPECT_FALSE(d.session().authenticated());
  EXPECT_EQ(d.Send("MAIL FROM:<a@client.test>\r\nRCPT TO:<x@gmail.test>\r\nRSET\r\n"),
            "250 2.1.0 Ok\r\n554 5.7.1 Relay access denied\r\n250 2.0.0 Ok\r\n");
  EXPECT_EQ(d.Send("AUTH PLAIN " + Plain("alice", "s3cret") + "\r\n"),
            "235 2.7.0 Authentication successful\r\n");
  EXPECT_THAT(d.session().TakeRejections(), ElementsAre("auth_failed", "relay_denied"));
}

TEST(SmtpSessionAuthTest, Cancel) {
  SessionDriver d = TlsSessionWithAuth();
  d.Start();
  d.StartTls();
  d.Send("EHLO client.test\r\n");
  EXPECT_EQ(d.Send("AUTH PLAIN\r\n*\r\n"), "334 \r\n501 5.7.0 Authentication aborted\r\n");
  EXPECT_EQ(d.Send("AUTH LOGIN\r\n" + B64("alice") + "\r\n*\r\n"),
            "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n501 5.7.0 Authentication aborted\r\n");
  // Back to commands.
  EXPECT_EQ(d.Send("NOOP\r\n"), "250 2.0.0 Ok\r\n");
  EXPECT_THAT(d.auth_requests(), IsEmpty());
  EXPECT_THAT(d.session().TakeRejections(), ElementsAre("auth_aborted", "auth_aborted"));
}

TEST(SmtpSessionAuthTest, MalformedResponses) {
  SessionDriver d = TlsSessionWithAuth();
  d.Start();
  d.StartTls();
  d.Send("EHLO client.test\r\n");
  const std::string cannot = "501 5.5.2 Cannot decode response\r\n";
  EXPECT_EQ(d.Send("AUTH PLAIN !!!!\r\n"), cannot);
  EXPECT_EQ(d.Send("AUTH PLAIN\r\nYWxpY2U\r\n"), "334 \r\n" + cannot);      // unpadded
  EXPECT_EQ(d.Send("AUTH PLAIN " + B64("alice:s3cret") + "\r\n"), cannot);  // no NULs
  EXPECT_EQ(d.Send("AUTH LOGIN\r\nYW xp\r\n"), "334 VXNlcm5hbWU6\r\n" + cannot);
  EXPECT_EQ(d.Send("AUTH LOGIN " + B64("alice") + "\r\n====\r\n"), "334 UGFzc3dvcmQ6\r\n" + cannot);
  EXPECT_EQ(d.Send("AUTH\r\n"), "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n");
  EXPECT_EQ(d.Send("AUTH PLAIN a b\r\n"),
            "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n");
  EXPECT_EQ(d.Send("AUTH CRAM-MD5\r\n"), "504 5.5.4 Unrecognized authentication type\r\n");
  // Fields that cannot verify are refused without a check.
  const std::string invalid = "535 5.7.8 Authentication credentials invalid\r\n";
  EXPECT_EQ(d.Send("AUTH PLAIN " + B64(std::string("bob\0alice\0s3cret", 16)) + "\r\n"), invalid);
  EXPECT_EQ(d.Send("AUTH PLAIN " + Plain("", "s3cret") + "\r\n"), invalid);
  EXPECT_EQ(d.Send("AUTH PLAIN =\r\n"), cannot);
  EXPECT_THAT(d.auth_requests(), IsEmpty());
  EXPECT_FALSE(d.session().authenticated());
}

TEST(SmtpSessionAuthTest, SequenceErrors) {
  SessionDriver d = TlsSessionWithAuth();
  d.Start();
  d.StartTls();
  EXPECT_EQ(d.Send("AUTH PLAIN " + Plain("alice", "s3cret") + "\r\n"),
            "503 5.5.1 Error: send EHLO first\r\n");
  d.Send("HELO client.test\r\n");
  EXPECT_EQ(d.Send("AUTH PLAIN " + Plain("alice", "s3cret") + "\r\n"),
            "503 5.5.1 Error: send EHLO first\r\n");
  d.Send("EHLO client.test\r\nMAIL FROM:<a@client.test>\r\n");
  EXPECT_EQ(d.Send("AUTH PLAIN " + Plain("alice", "s3cret") + "\r\n"),
            "503 5.5.1 Error: MAIL transaction in progress\r\n");
  d.Send("RSET\r\n");
  EXPECT_EQ(d.Send("AUTH PLAIN " + Plain("alice", "s3cret") + "\r\n"),
            "235 2.7.0 Authentication successful\r\n");
  EXPECT_EQ(d.Send("AUTH PLAIN " + Plain("alice", "s3cret") + "\r\n"),
            "503 5.5.1 Error: already authenticated\r\n");
  // EHLO does not undo AUTH.
  d.Send("EHLO client.test\r\n");
  EXPECT_TRUE(d.session().authenticated());
  EXPECT_EQ(d.auth_requests().size(), 1u);
}

TEST(SmtpSessionAuthTest, ThrottledAndTemporaryFailure) {
  SessionDriver d = TlsSessionWithAuth();
  d.set_auth_outcome(AuthOutcome::kThrottled);
  d.Start();
  d.StartTls();
  d.Send("EHLO client.test\r\n");
  EXPECT_EQ(d.Send("AUTH PLAIN " + Plain("alice", "s3cret") + "\r\n"),
            "454 4.7.0 Too many failed authentication attempts, try later\r\n");
  d.set_auth_outcome(AuthOutcome::kTempFail);
  EXPECT_EQ(
      d.Send("AUTH LOGIN\r\n" + B64("alice") + "\r\n" + B64("s3cret") + "\r\n"),
      "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n454 4.7.0 Temporary authentication failure\r\n");
  EXPECT_FALSE(d.session().authenticated());
  EXPECT_THAT(d.session().TakeRejections(), ElementsAre("auth_throttled", "auth_unavailable"));
}

TEST(SmtpSessionAuthTest, WaitsForTheVerdictAndKeepsPipelinedInput) {
  SessionDriver d = TlsSessionWithAuth();
  d.set_hold_auth(true);
  d.Start();
  d.StartTls();
  d.Send("EHLO client.test\r\n");
  const std::string mail = "MAIL FROM:<alice@client.test>\r\nRCPT TO:<x@gmail.test>\r\n";
  EXPECT_EQ(d.Send("AUTH PLAIN " + Plain("alice", "s3cret") + "\r\n" + mail), "");
  EXPECT_EQ(d.last_event(), Event::kAuthCheck);
  EXPECT_EQ(d.session().buffered_bytes(), mail.size());
  std::string out;
  EXPECT_EQ(d.session().Process(&out), Event::kWaitAuth);
  d.session().Receive("NOOP\r\n");
  EXPECT_EQ(d.session().Process(&out), Event::kWaitAuth);
  EXPECT_EQ(out, "");
  // A second take gets nothing.
  EXPECT_EQ(d.session().TakeAuthRequest().username, "");
  d.session().AuthDone(AuthOutcome::kOk, {"client.test"}, &out);
  EXPECT_EQ(d.session().Process(&out), Event::kNeedInput);
  // The pipelined RCPT ran as an authenticated client.
  EXPECT_EQ(out,
            "235 2.7.0 Authentication successful\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
            "250 2.0.0 Ok\r\n");
}

TEST(SmtpSessionAuthTest, TimeoutWhileCheckingIgnoresTheVerdict) {
  SessionDriver d = TlsSessionWithAuth();
  d.set_hold_auth(true);
  d.Start();
  d.StartTls();
  d.Send("EHLO client.test\r\nAUTH PLAIN " + Plain("alice", "s3cret") + "\r\n");
  std::string out;
  d.session().Timeout(&out);
  EXPECT_EQ(out, "421 4.4.2 mx.test Error: timeout exceeded\r\n");
  d.session().AuthDone(AuthOutcome::kOk, {}, &out);
  EXPECT_EQ(out, "421 4.4.2 mx.test Error: timeout exceeded\r\n");
  EXPECT_FALSE(d.session().authenticated());
}

TEST(SmtpSessionAuthTest, CredentialsNeverLeakIntoRepliesOrReasons) {
  SessionDriver d = TlsSessionWithAuth();
  d.Start();
  d.StartTls();
  std::string out = d.Send("EHLO client.test\r\n");
  out += d.Send("AUTH PLAIN " + Plain("mallory", "hunter2-secret") + "\r\n");
  out += d.Send("AUTH LOGIN\r\n" + B64("mallory") + "\r\n" + B64("hunter2-secret") + "\r\n");
  out += d.Send("AUTH PLAIN " + B64(std::string("mallory\0hunter2-secret", 22)) + "\r\n");
  out += d.Send("AUTH LOGIN " + std::string(600, 'A') + "\r\n");
  for (std::string_view secret : {"mallory", "hunter2", "bWFsbG9yeQ", "aHVudGVy"}) {
    EXPECT_EQ(out.find(secret), std::string::npos) << secret;
  }
  for (const std::string& reason : d.session().TakeRejections()) {
    EXPECT_THAT(reason, testing::AnyOf("auth_failed", "syntax", "line_too_long")) << reason;
  }
}

TEST(SmtpSessionAuthTest, AuthLineTooLong) {
  SessionDriver d = TlsSessionWithAuth();
  d.Start();
  d.StartTls();
  d.Send("EHLO client.test\r\n");
  EXPECT_EQ(d.Send("AUTH PLAIN\r\n" + std::string(600, 'A') + "\r\nNOOP\r\n"),
            "334 \r\n500 5.5.6 Authentication exchange line is too long\r\n250 2.0.0 Ok\r\n");
  EXPECT_THAT(d.session().TakeRejections(), ElementsAre("line_too_long"));
}

TEST(SmtpSessionAuthTest, AuthConversationDoesNotDependOnChunking) {
  const std::string input = "EHLO c\r\nAUTH LOGIN\r\n" + B64("alice") + "\r\n" + B64("s3cret") +
                            "\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<x@gmail.test>\r\n"
                            "DATA\r\nx\r\n.\r\nQUIT\r\n";
  std::string expected;
  for (size_t chunk : {input.size(), size_t{1}, size_t{5}}) {
    SessionDriver d = TlsSessionWithAuth();
    d.Start();
    d.StartTls();
    std::string out;
    for (size_t i = 0; i < input.size(); i += chunk) out += d.Send(input.substr(i, chunk));
    if (expected.empty()) expected = out;
    EXPECT_EQ(out, expected) << "chunk " << chunk;
    EXPECT_THAT(out, HasSubstr("235 2.7.0 Authentication successful\r\n"));
    EXPECT_EQ(d.messages().size(), 1u);
  }
}

TEST(SmtpSessionAuthTest, SenderLoginMatch) {
  SessionDriver d = TlsSessionWithAuth(kUntrustedIp, nullptr, /*sender_login_match=*/true);
  d.Start();
  d.StartTls();
  // Before AUTH the rule does not apply (relay rules do).
  d.Send("EHLO client.test\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<x@other.test>\r\nRSET\r\n"), "250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n");
  d.Send("AUTH PLAIN " + Plain("alice", "s3cret") + "\r\n");
  const std::string not_owned = "553 5.7.1 Sender address rejected: not owned by user\r\n";
  EXPECT_EQ(d.Send("MAIL FROM:<x@other.test>\r\n"), not_owned);
  EXPECT_EQ(d.Send("MAIL FROM:<x@sub.client.test>\r\n"), not_owned);  // exact entry only
  EXPECT_EQ(d.Send("MAIL FROM:<x@corp.test>\r\nRSET\r\n"), "250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<x@Dept.CORP.test>\r\nRSET\r\n"), "250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<alice@CLIENT.test>\r\nRSET\r\n"),
            "250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<>\r\nRSET\r\n"), "250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n");
  EXPECT_THAT(d.session().TakeRejections(), ElementsAre("sender_not_owned", "sender_not_owned"));

  // Off: an authenticated user may use any sender.
  SessionDriver off = TlsSessionWithAuth();
  off.Start();
  off.StartTls();
  off.Send("EHLO client.test\r\nAUTH PLAIN " + Plain("alice", "s3cret") + "\r\n");
  EXPECT_EQ(off.Send("MAIL FROM:<x@other.test>\r\n"), "250 2.1.0 Ok\r\n");
}

// Fingerprints of the test client certificate and of its key.
const std::string kCertSha = std::string(64, 'c');
const std::string kSpkiSha = std::string(64, 'd');

InboundPolicy TestInboundPolicy() {
  std::vector<PartnerRule> partners(3);
  partners[0].domain = ".partner.example";
  partners[0].require_tls = true;
  partners[1].domain = "pinned.example";
  partners[1].pins = {"sha256:" + std::string(64, 'C'), "sha256:" + std::string(64, 'e')};
  partners[2].domain = "spki.example";
  partners[2].pins = {"sha256:" + kSpkiSha};
  return *InboundPolicy::Create(std::move(partners), {"secure.example.net"});
}

TEST(SmtpSessionInboundTest, PartnerRequiresTls) {
  const InboundPolicy policy = TestInboundPolicy();
  SessionDriver d({}, kUntrustedIp, Listener(TlsMode::kOffer, false, &policy));
  d.Start();
  d.Send("EHLO client.test\r\n");
  const std::string must = "530 5.7.0 Must issue a STARTTLS command first\r\n";
  EXPECT_EQ(d.Send("MAIL FROM:<a@partner.example>\r\n"), must);
  EXPECT_EQ(d.Send("MAIL FROM:<a@mx.Partner.Example>\r\n"), must);
  // Pins imply TLS.
  EXPECT_EQ(d.Send("MAIL FROM:<a@pinned.example>\r\n"), must);
  EXPECT_EQ(d.Send("MAIL FROM:<a@notpartner.example>\r\nRSET\r\n"),
            "250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<>\r\n"), "250 2.1.0 Ok\r\n");
  EXPECT_THAT(d.session().TakeRejections(),
              ElementsAre("tls_required", "tls_required", "tls_required"));
  d.StartTls();
  d.Send("EHLO client.test\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@partner.example>\r\nRCPT TO:<bob@example.com>\r\n"),
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
}

TEST(SmtpSessionInboundTest, PartnerPins) {
  const InboundPolicy policy = TestInboundPolicy();
  struct Case {
    TlsFacts facts;
    std::string sender;
    std::string reply;
    std::vector<std::string> reasons;
  };
  const Case cases[] = {
      {Tls13(),
       "a@pinned.example",
       "530 5.7.0 Client certificate required for pinned.example\r\n",
       {"client_cert_required"}},
      {Tls13(std::string(64, 'f'), std::string(64, 'f')),
       "a@pinned.example",
       "550 5.7.1 Client certificate not authorised for pinned.example\r\n",
       {"client_cert_rejected"}},
      // The certificate's fingerprint, pinned in uppercase.
      {Tls13(kCertSha, kSpkiSha), "a@pinned.example", "250 2.1.0 Ok\r\n", {}},
      // The key's fingerprint: survives certificate renewal with the same key.
      {Tls13(std::string(64, '0'), kSpkiSha), "a@spki.example", "250 2.1.0 Ok\r\n", {}},
      {Tls13(kCertSha, std::string(64, '0')),
       "a@spki.example",
       "550 5.7.1 Client certificate not authorised for spki.example\r\n",
       {"client_cert_rejected"}},
      // Other senders do not need a certificate.
      {Tls13(), "a@client.test", "250 2.1.0 Ok\r\n", {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.sender + " " + c.facts.peer_cert_sha256);
    SessionDriver d({}, kUntrustedIp, Listener(TlsMode::kOffer, false, &policy));
    d.Start();
    d.StartTls(c.facts);
    d.Send("EHLO client.test\r\n");
    EXPECT_EQ(d.Send("MAIL FROM:<" + c.sender + ">\r\n"), c.reply);
    EXPECT_EQ(d.session().TakeRejections(), c.reasons);
  }
}

TEST(SmtpSessionInboundTest, RequireTlsRecipientDomains) {
  const InboundPolicy policy = TestInboundPolicy();
  // Even a trusted client may not send there in plaintext.
  for (std::string_view ip : {kUntrustedIp, kTrustedIp}) {
    SessionDriver d({}, ip, Listener(TlsMode::kOffer, false, &policy));
    d.Start();
    d.Send("EHLO client.test\r\nMAIL FROM:<a@client.test>\r\n");
    EXPECT_EQ(d.Send("RCPT TO:<bob@secure.example.net>\r\n"),
              "530 5.7.0 Must issue a STARTTLS command first\r\n");
    EXPECT_EQ(d.Send("RCPT TO:<bob@example.com>\r\n"), "250 2.1.5 Ok\r\n");
    EXPECT_THAT(d.session().TakeRejections(), ElementsAre("tls_required"));
    d.StartTls();
    d.Send("EHLO client.test\r\nMAIL FROM:<a@client.test>\r\n");
    EXPECT_EQ(d.Send("RCPT TO:<bob@SECURE.example.net>\r\n"), "250 2.1.5 Ok\r\n");
  }
}

// ---------------------------------------------------------------------------
// CHUNKING (RFC 3030), DSN (RFC 3461), command counts, phase().

// EHLO, MAIL, RCPT (replies checked): ready for BDAT.
void OpenBdat(SessionDriver& d) {
  d.Start();
  EXPECT_THAT(d.Send("EHLO client.test\r\n"), HasSubstr("250-CHUNKING\r\n"));
  EXPECT_EQ(d.Send("MAIL FROM:<alice@client.test>\r\n"), "250 2.1.0 Ok\r\n");
  EXPECT_EQ(d.Send("RCPT TO:<bob@example.com>\r\n"), "250 2.1.5 Ok\r\n");
}

TEST(SmtpSessionBdatTest, SingleChunkLast) {
  SessionDriver d;
  OpenBdat(d);
  const std::string content = "Subject: hi\r\n\r\n.leading dot\r\n.\r\nbody\r\n";
  EXPECT_EQ(d.Send("BDAT " + std::to_string(content.size()) + " LAST\r\n" + content),
            "250 2.0.0 Ok: queued as 4Xq7mZ\r\n");
  EXPECT_EQ(d.last_event(), Event::kNeedInput);
  ASSERT_EQ(d.messages().size(), 1u);
  const AcceptedMessage& m = d.messages()[0];
  EXPECT_THAT(m.recipients, ElementsAre("bob@example.com"));
  // Raw octets: no dot-unstuffing; the Received header as after DATA.
  EXPECT_EQ(m.body, std::string(kPlainReceived) + content);
  EXPECT_EQ(d.session().messages_accepted(), 1u);
  EXPECT_THAT(d.session().TakeRejections(), IsEmpty());
  // The next transaction may use DATA.
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n"),
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
            "250 2.0.0 Ok: queued as 4Xq7mZ\r\n");
}

TEST(SmtpSessionBdatTest, SeveralChunks) {
  SessionDriver d;
  OpenBdat(d);
  EXPECT_EQ(d.Send("BDAT 5\r\nab\r\nc"), "250 2.0.0 5 octets received\r\n");
  // A CRLF split between chunks is a CRLF; "bdat" and "last" in any case.
  EXPECT_EQ(d.Send("bdat 2\r\nd\r"), "250 2.0.0 2 octets received\r\n");
  EXPECT_EQ(d.Send("BDAT 0\r\n"), "250 2.0.0 0 octets received\r\n");
  EXPECT_EQ(d.Send("BDAT 3  last\r\n\nef"), "250 2.0.0 Ok: queued as 4Xq7mZ\r\n");
  ASSERT_EQ(d.messages().size(), 1u);
  // The last line had no CRLF: one is added.
  EXPECT_EQ(d.messages()[0].body, std::string(kPlainReceived) + "ab\r\ncd\r\nef\r\n");
  EXPECT_EQ(d.session().commands(), 7u);
}

TEST(SmtpSessionBdatTest, ZeroLastEndsTheMessage) {
  {
    SessionDriver d;
    OpenBdat(d);
    EXPECT_EQ(d.Send("BDAT 3\r\nab\n"), "250 2.0.0 3 octets received\r\n");
    // Bare LF: the message is refused, but only at LAST.
    EXPECT_EQ(d.Send("BDAT 0 LAST\r\n"), "550 5.6.11 Bare CR or LF not allowed\r\n");
    EXPECT_THAT(d.messages(), IsEmpty());
  }
  {
    SessionDriver d;
    OpenBdat(d);
    EXPECT_EQ(d.Send("BDAT 4\r\nab\r\n"), "250 2.0.0 4 octets received\r\n");
    EXPECT_EQ(d.Send("BDAT 0 LAST\r\n"), "250 2.0.0 Ok: queued as 4Xq7mZ\r\n");
    ASSERT_EQ(d.messages().size(), 1u);
    EXPECT_EQ(d.messages()[0].body, std::string(kPlainReceived) + "ab\r\n");
  }
  {
    // An empty message, as ".\r\n" right after DATA is.
    SessionDriver d;
    OpenBdat(d);
    EXPECT_EQ(d.Send("BDAT 0 LAST\r\n"), "250 2.0.0 Ok: queued as 4Xq7mZ\r\n");
    ASSERT_EQ(d.messages().size(), 1u);
    EXPECT_EQ(d.messages()[0].body, kPlainReceived);
  }
}

const std::string kBdatConversation =
    "EHLO client.test\r\n"
    "MAIL FROM:<alice@client.test>\r\n"
    "RCPT TO:<bob@example.com>\r\n"
    "RCPT TO:<eve@elsewhere.test>\r\n"
    "BDAT 10\r\n"
    "MAIL FROM:"  // content, not a command
    "BDAT 13 LAST\r\n"
    "<x>\r\nQUIT\r\nab"
    "NOOP\r\n"
    "QUIT\r\n";

TEST(SmtpSessionBdatTest, PipelinedWithCommands) {
  SessionDriver d;
  d.Start();
  EXPECT_EQ(d.Send(kBdatConversation), std::string(kEhloReply) +
                                           "250 2.1.0 Ok\r\n"
                                           "250 2.1.5 Ok\r\n"
                                           "554 5.7.1 Relay access denied\r\n"
                                           "250 2.0.0 10 octets received\r\n"
                                           "250 2.0.0 Ok: queued as 4Xq7mZ\r\n"
                                           "250 2.0.0 Ok\r\n"
                                           "221 2.0.0 Bye\r\n");
  EXPECT_EQ(d.last_event(), Event::kClose);
  ASSERT_EQ(d.messages().size(), 1u);
  EXPECT_EQ(d.messages()[0].body, std::string(kPlainReceived) + "MAIL FROM:<x>\r\nQUIT\r\nab\r\n");
}

TEST(SmtpSessionBdatTest, PipelinedCommandsWaitForSpool) {
  SessionDriver d;
  d.set_hold_spool(true);
  OpenBdat(d);
  EXPECT_EQ(d.Send("BDAT 3 LAST\r\nx\r\nRSET\r\nNOOP\r\n"), "");
  EXPECT_EQ(d.last_event(), Event::kSpool);
  EXPECT_EQ(d.session().buffered_bytes(), 12u);
  std::string out;
  d.session().SpoolDone(absl::OkStatus(), "4Xq7mZ", &out);
  EXPECT_EQ(d.session().Process(&out), Event::kNeedInput);
  EXPECT_EQ(out, "250 2.0.0 Ok: queued as 4Xq7mZ\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n");
}

// The same replies and message whichever two pieces the input is cut into,
// and when it arrives one octet at a time.
TEST(SmtpSessionBdatTest, ChunkBoundariesAtEveryPosition) {
  SessionDriver whole;
  whole.Start();
  const std::string expected = whole.Send(kBdatConversation);
  ASSERT_EQ(whole.messages().size(), 1u);
  for (size_t cut = 0; cut <= kBdatConversation.size(); ++cut) {
    SessionDriver d;
    d.Start();
    std::string out = d.Send(kBdatConversation.substr(0, cut));
    out += d.Send(kBdatConversation.substr(cut));
    EXPECT_EQ(out, expected) << "cut at " << cut;
    ASSERT_EQ(d.messages().size(), 1u) << "cut at " << cut;
    EXPECT_EQ(d.messages()[0].body, whole.messages()[0].body) << "cut at " << cut;
  }
  SessionDriver d;
  d.Start();
  std::string out;
  for (char c : kBdatConversation) out += d.Send(std::string(1, c));
  EXPECT_EQ(out, expected);
}

TEST(SmtpSessionBdatTest, NoTransactionChunkIsConsumedAndRefused) {
  SessionDriver d;
  d.Start();
  // Before EHLO, and after EHLO without MAIL: the chunk would be a complete
  // transaction if it ran as commands. It must not.
  const std::string smuggled =
      "MAIL FROM:<ceo@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nx\r\n.\r\n";
  const std::string bdat = "BDAT " + std::to_string(smuggled.size()) + " LAST\r\n" + smuggled;
  EXPECT_EQ(d.Send(bdat), "503 5.5.1 Error: need MAIL command\r\n");
  d.Send("EHLO client.test\r\n");
  EXPECT_EQ(d.Send(bdat + "NOOP\r\n"), "503 5.5.1 Error: need MAIL command\r\n250 2.0.0 Ok\r\n");
  // MAIL but no accepted recipient: as for DATA.
  d.Send("MAIL FROM:<a@client.test>\r\nRCPT TO:<x@elsewhere.test>\r\n");
  EXPECT_EQ(d.Send(bdat), "554 5.5.1 No valid recipients\r\n");
  EXPECT_THAT(d.messages(), IsEmpty());
  EXPECT_THAT(d.session().TakeRejections(),
              ElementsAre("bad_sequence", "bad_sequence", "relay_denied", "bad_sequence"));
  // The transaction is still open: a recipient, then chunks.
  EXPECT_EQ(d.Send("RCPT TO:<bob@example.com>\r\nBDAT 3 LAST\r\nok\n"),
            "250 2.1.5 Ok\r\n550 5.6.11 Bare CR or LF not allowed\r\n");
}

TEST(SmtpSessionBdatTest, NoMixingWithData) {
  SessionDriver d;
  OpenBdat(d);
  EXPECT_EQ(d.Send("BDAT 4\r\nab\r\n"), "250 2.0.0 4 octets received\r\n");
  EXPECT_EQ(d.Send("DATA\r\n"), "503 5.5.1 Error: DATA after BDAT\r\n");
  EXPECT_EQ(d.Send("RCPT TO:<carol@example.com>\r\n"), "503 5.5.1 Error: RCPT after BDAT\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test>\r\n"), "503 5.5.1 Error: nested MAIL command\r\n");
  // The transaction survives those: it can still be finished.
  EXPECT_EQ(d.Send("BDAT 4 LAST\r\ncd\r\n"), "250 2.0.0 Ok: queued as 4Xq7mZ\r\n");
  ASSERT_EQ(d.messages().size(), 1u);
  EXPECT_EQ(d.messages()[0].body, std::string(kPlainReceived) + "ab\r\ncd\r\n");
  EXPECT_THAT(d.session().TakeRejections(),
              ElementsAre("bad_sequence", "bad_sequence", "bad_sequence"));
  // RSET drops a chunked transaction; the next may use DATA.
  d.Send("MAIL FROM:<a@c.test>\r\nRCPT TO:<b@example.com>\r\nBDAT 2\r\nzz");
  EXPECT_EQ(d.Send("RSET\r\nBDAT 1 LAST\r\nq"),
            "250 2.0.0 Ok\r\n503 5.5.1 Error: need MAIL command\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test>\r\nRCPT TO:<b@example.com>\r\nDATA\r\ny\r\n.\r\n"),
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
            "250 2.0.0 Ok: queued as 4Xq7mZ\r\n");
  ASSERT_EQ(d.messages().size(), 2u);
  EXPECT_EQ(d.messages()[1].body,
            "Received: from client.test ([203.0.113.5])\r\n"
            "\tby mx.test (Postern) with ESMTP id 4Xq7mZ\r\n"
            "\tfor <b@example.com>; Mon, 23 Nov 2026 08:40:58 +0000\r\ny\r\n");
}

TEST(SmtpSessionBdatTest, SizeLimitAcrossChunks) {
  SessionLimits limits;
  limits.max_message_size = 10;
  SessionDriver d(limits);
  OpenBdat(d);
  EXPECT_EQ(d.Send("BDAT 6\r\n123456"), "250 2.0.0 6 octets received\r\n");
  // Over the limit: refused once its octets are in, and the transaction is
  // over; chunks pipelined after it are consumed and refused too.
  EXPECT_EQ(d.Send("BDAT 5\r\n789"), "");
  EXPECT_EQ(d.Send("0a"), "552 5.3.4 Message size exceeds fixed limit\r\n");
  EXPECT_EQ(d.Send("BDAT 6 LAST\r\nNOOP\r\nNOOP\r\n"),
            "503 5.5.1 Error: need MAIL command\r\n250 2.0.0 Ok\r\n");
  EXPECT_THAT(d.messages(), IsEmpty());
  EXPECT_THAT(d.session().TakeRejections(), ElementsAre("too_large", "bad_sequence"));
  // Exactly at the limit is fine, however it is split.
  d.Send("MAIL FROM:<a@c.test>\r\nRCPT TO:<bob@example.com>\r\n");
  EXPECT_EQ(d.Send("BDAT 4\r\n1234BDAT 6 LAST\r\n5678\r\n"),
            "250 2.0.0 4 octets received\r\n250 2.0.0 Ok: queued as 4Xq7mZ\r\n");
  ASSERT_EQ(d.messages().size(), 1u);
  // The declared SIZE is checked at MAIL, as for DATA.
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test> SIZE=11\r\n"),
            "552 5.3.4 Message size exceeds fixed limit\r\n");
}

TEST(SmtpSessionBdatTest, BareCrOrLfRefusedAtLast) {
  for (std::string_view chunks : {
           "BDAT 3 LAST\r\na\nb",
           "BDAT 3 LAST\r\na\rb",
           "BDAT 3 LAST\r\nab\r",              // a final CR
           "BDAT 2\r\na\rBDAT 2 LAST\r\nb\n",  // CR, then not LF
           "BDAT 1\r\n\nBDAT 0 LAST\r\n",
       }) {
    SCOPED_TRACE(testing::PrintToString(std::string(chunks)));
    SessionDriver d;
    OpenBdat(d);
    const std::string out = d.Send(std::string(chunks) + "NOOP\r\n");
    EXPECT_THAT(out, testing::EndsWith("550 5.6.11 Bare CR or LF not allowed\r\n250 2.0.0 Ok\r\n"));
    EXPECT_THAT(d.messages(), IsEmpty());
    EXPECT_THAT(d.session().TakeRejections(), ElementsAre("bare_lf"));
    EXPECT_EQ(d.Send("RCPT TO:<bob@example.com>\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
  }
}

TEST(SmtpSessionBdatTest, NoLineLengthLimit) {
  SessionDriver d;
  OpenBdat(d);
  const std::string line = std::string(5000, 'a') + "\r\n";
  EXPECT_EQ(d.Send("BDAT " + std::to_string(line.size()) + " LAST\r\n" + line),
            "250 2.0.0 Ok: queued as 4Xq7mZ\r\n");
  ASSERT_EQ(d.messages().size(), 1u);
  EXPECT_EQ(d.messages()[0].body, std::string(kPlainReceived) + line);
}

TEST(SmtpSessionBdatTest, HugeDeclaredSizeAllocatesNothing) {
  {
    // Within the limit, and far beyond memory: octets are stored as they
    // come, never reserved up front (ASan would fail an attempt).
    SessionLimits limits;
    limits.max_message_size = size_t{1} << 50;
    SessionDriver d(limits);
    OpenBdat(d);
    EXPECT_EQ(d.Send("BDAT 1125899906842624 LAST\r\n" + std::string(1 << 20, 'x')), "");
    EXPECT_EQ(d.session().buffered_bytes(), 0u);
    EXPECT_EQ(d.session().phase(), SmtpServerSession::Phase::kData);
  }
  for (std::string_view size : {"52428801", "18446744073709551615", "99999999999999999999999999"}) {
    // Over the limit (or beyond uint64_t): refused, but only after octets
    // that never end; discarded as they arrive, until a timeout.
    SessionDriver d;
    OpenBdat(d);
    EXPECT_EQ(d.Send("BDAT " + std::string(size) + " LAST\r\n"), "");
    for (int i = 0; i < 4; ++i) EXPECT_EQ(d.Send(std::string(1 << 20, 'y') + "QUIT\r\n"), "");
    EXPECT_EQ(d.session().buffered_bytes(), 0u);
    EXPECT_EQ(d.session().phase(), SmtpServerSession::Phase::kData);
    std::string out;
    d.session().Timeout(&out);
    EXPECT_EQ(out, "421 4.4.2 mx.test Error: timeout exceeded\r\n");
  }
}

TEST(SmtpSessionBdatTest, UnparseableBdatCloses) {
  for (std::string_view line : {"BDAT", "BDAT abc", "BDAT -1", "BDAT +5", "BDAT 10 LATE",
                                "BDAT 10 LAST x", "BDAT 0x10", "BDAT 1.5"}) {
    SCOPED_TRACE(line);
    SessionDriver d;
    OpenBdat(d);
    EXPECT_EQ(d.Send(std::string(line) + "\r\nNOOP\r\n"),
              "501 5.5.4 Syntax: BDAT chunk-size [LAST]\r\n"
              "421 4.5.0 mx.test Error: BDAT stream out of sync\r\n");
    EXPECT_EQ(d.last_event(), Event::kClose);
    EXPECT_THAT(d.session().TakeRejections(), ElementsAre("syntax", "bdat_out_of_sync"));
  }
  // So does one too long to read, with or without its line end.
  for (std::string_view end : {"\r\n", ""}) {
    SessionDriver d;
    OpenBdat(d);
    EXPECT_EQ(d.Send("BDAT 1" + std::string(600, '0') + std::string(end)),
              "500 5.5.2 Line too long\r\n421 4.5.0 mx.test Error: BDAT stream out of sync\r\n");
    EXPECT_EQ(d.last_event(), Event::kClose);
  }
}

TEST(SmtpSessionBdatTest, ChunkReplyCanHitTheErrorLimit) {
  SessionLimits limits;
  limits.max_errors = 2;
  SessionDriver d(limits);
  d.Start();
  EXPECT_EQ(d.Send("BDAT 2\r\nxyBDAT 2\r\nxyNOOP\r\n"),
            "503 5.5.1 Error: need MAIL command\r\n503 5.5.1 Error: need MAIL command\r\n"
            "421 4.7.0 mx.test Error: too many errors\r\n");
  EXPECT_EQ(d.last_event(), Event::kClose);
}

TEST(SmtpSessionBdatTest, Phase) {
  using Phase = SmtpServerSession::Phase;
  SessionDriver d;
  d.set_hold_spool(true);
  EXPECT_EQ(d.session().phase(), Phase::kCommand);
  OpenBdat(d);
  d.Send("BDAT 4\r\nab");
  EXPECT_EQ(d.session().phase(), Phase::kData);
  d.Send("\r\n");
  // Between chunks the client owes a command.
  EXPECT_EQ(d.session().phase(), Phase::kCommand);
  d.Send("BDAT 1 LAST\r\n");
  EXPECT_EQ(d.session().phase(), Phase::kData);
  d.Send("x");
  EXPECT_EQ(d.last_event(), Event::kSpool);
  EXPECT_EQ(d.session().phase(), Phase::kCommand);
  std::string out;
  d.session().SpoolDone(absl::OkStatus(), "4Xq7mZ", &out);
  d.set_hold_spool(false);
  d.Send("MAIL FROM:<a@c.test>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
  EXPECT_EQ(d.session().phase(), Phase::kData);
  d.Send("x\r\n.\r\n");
  EXPECT_EQ(d.session().phase(), Phase::kCommand);
  d.Send("QUIT\r\n");
  EXPECT_EQ(d.session().phase(), Phase::kCommand);
}

TEST(SmtpSessionDsnTest, EhloOffersDsn) {
  SessionDriver d;
  d.Start();
  const std::string out = d.Send("EHLO client.test\r\n");
  EXPECT_THAT(out, HasSubstr("250-DSN\r\n"));
  EXPECT_THAT(out, HasSubstr("250-CHUNKING\r\n"));
  EXPECT_THAT(out, Not(HasSubstr("BINARYMIME")));
  // Plain HELO offers nothing, but the parameters are still understood.
  EXPECT_EQ(d.Send("HELO client.test\r\nMAIL FROM:<a@c.test> RET=FULL\r\n"),
            "250 mx.test\r\n250 2.1.0 Ok\r\n");
}

TEST(SmtpSessionDsnTest, ParametersAreStoredWithTheMessage) {
  SessionDriver d;
  d.Start();
  d.Send("EHLO client.test\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<alice@client.test> ret=hdrs ENVID=QQ+2B314159\r\n"),
            "250 2.1.0 Ok\r\n");
  EXPECT_EQ(
      d.Send("RCPT TO:<a@example.com> NOTIFY=success,DELAY ORCPT=rfc822;A+2Bx@example.com\r\n"),
      "250 2.1.5 Ok\r\n");
  EXPECT_EQ(d.Send("RCPT TO:<x@elsewhere.test> NOTIFY=NEVER\r\n"),
            "554 5.7.1 Relay access denied\r\n");
  EXPECT_EQ(d.Send("RCPT TO:<b@example.com>\r\n"), "250 2.1.5 Ok\r\n");
  EXPECT_EQ(d.Send("RCPT TO:<c@example.com> notify=never\r\n"), "250 2.1.5 Ok\r\n");
  d.Send("DATA\r\nx\r\n.\r\n");
  ASSERT_EQ(d.messages().size(), 1u);
  const AcceptedMessage& m = d.messages()[0];
  EXPECT_EQ(m.dsn_ret, "HDRS");
  EXPECT_EQ(m.dsn_envid, "QQ+2B314159");  // still xtext
  EXPECT_THAT(m.recipients, ElementsAre("a@example.com", "b@example.com", "c@example.com"));
  ASSERT_EQ(m.recipient_dsn.size(), 3u);
  EXPECT_EQ(m.recipient_dsn[0].address, "a@example.com");
  EXPECT_EQ(m.recipient_dsn[0].notify, "SUCCESS,DELAY");
  EXPECT_EQ(m.recipient_dsn[0].orcpt, "rfc822;A+2Bx@example.com");
  EXPECT_EQ(m.recipient_dsn[1].address, "b@example.com");
  EXPECT_EQ(m.recipient_dsn[1].notify, "");
  EXPECT_EQ(m.recipient_dsn[1].orcpt, "");
  EXPECT_EQ(m.recipient_dsn[2].address, "c@example.com");
  EXPECT_EQ(m.recipient_dsn[2].notify, "NEVER");

  // Nothing carries over into the next transaction, and chunked messages
  // keep theirs too.
  d.Send("MAIL FROM:<a@c.test> RET=FULL\r\nRCPT TO:<b@example.com> ORCPT=rfc822;b@example.com\r\n");
  d.Send("BDAT 3 LAST\r\nx\r\n");
  d.Send("MAIL FROM:<a@c.test>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n");
  ASSERT_EQ(d.messages().size(), 3u);
  EXPECT_EQ(d.messages()[1].dsn_ret, "FULL");
  EXPECT_EQ(d.messages()[1].dsn_envid, "");
  ASSERT_EQ(d.messages()[1].recipient_dsn.size(), 1u);
  EXPECT_EQ(d.messages()[1].recipient_dsn[0].orcpt, "rfc822;b@example.com");
  EXPECT_EQ(d.messages()[2].dsn_ret, "");
  ASSERT_EQ(d.messages()[2].recipient_dsn.size(), 1u);
  EXPECT_EQ(d.messages()[2].recipient_dsn[0].orcpt, "");
}

TEST(SmtpSessionDsnTest, InvalidValues) {
  SessionLimits limits;
  limits.max_errors = 100;
  SessionDriver d(limits);
  d.Start();
  d.Send("EHLO client.test\r\n");
  const std::string mail = "MAIL FROM:<a@c.test> ";
  EXPECT_EQ(d.Send(mail + "RET=ALL\r\n"), "501 5.5.4 Bad RET parameter syntax\r\n");
  EXPECT_EQ(d.Send(mail + "RET\r\n"), "501 5.5.4 Bad RET parameter syntax\r\n");
  EXPECT_EQ(d.Send(mail + "ENVID\r\n"), "501 5.5.4 Bad ENVID parameter syntax\r\n");
  EXPECT_EQ(d.Send(mail + "ENVID=a+2b\r\n"), "501 5.5.4 Bad ENVID parameter syntax\r\n");
  EXPECT_EQ(d.Send(mail + "ENVID=a+\r\n"), "501 5.5.4 Bad ENVID parameter syntax\r\n");
  EXPECT_EQ(d.Send(mail + "ENVID=" + std::string(101, 'e') + "\r\n"),
            "501 5.5.4 Bad ENVID parameter syntax\r\n");
  // Non-ASCII only with SMTPUTF8 (RFC 6533), wherever that is on the line.
  EXPECT_EQ(d.Send(mail + "ENVID=j\xc3\xb6rg\r\n"), "501 5.5.4 Bad ENVID parameter syntax\r\n");
  EXPECT_EQ(d.Send(mail + "RET=FULL RET=HDRS\r\n"), "501 5.5.4 Duplicate ESMTP parameter\r\n");
  EXPECT_EQ(d.Send(mail + "ENVID=j\xc3\xb6rg SMTPUTF8\r\n"), "250 2.1.0 Ok\r\n");
  d.Send("RSET\r\n");
  EXPECT_EQ(d.Send(mail + "ENVID=" + std::string(100, 'e') + "\r\n"), "250 2.1.0 Ok\r\n");

  const std::string rcpt = "RCPT TO:<b@example.com> ";
  for (std::string_view notify :
       {"NEVER,SUCCESS", "SUCCESS,SUCCESS", "ALWAYS", "SUCCESS,", "NONE"}) {
    EXPECT_EQ(d.Send(rcpt + "NOTIFY=" + std::string(notify) + "\r\n"),
              "501 5.5.4 Bad NOTIFY parameter syntax\r\n")
        << notify;
  }
  EXPECT_EQ(d.Send(rcpt + "NOTIFY\r\n"), "501 5.5.4 Bad NOTIFY parameter syntax\r\n");
  for (std::string_view orcpt : {"rfc822", "rfc822;", ";b@example.com", "rfc822;b+2bx@example.com",
                                 "utf-8;j\xc3\xb6rg@example.com"}) {
    EXPECT_EQ(d.Send(rcpt + "ORCPT=" + std::string(orcpt) + "\r\n"),
              "501 5.5.4 Bad ORCPT parameter syntax\r\n")
        << orcpt;
  }
  EXPECT_EQ(d.Send(rcpt + "RET=FULL\r\n"), "555 5.5.4 Unsupported option: RET\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test> NOTIFY=NEVER\r\n"),
            "503 5.5.1 Error: nested MAIL command\r\n");
  d.Send("RSET\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test> NOTIFY=NEVER\r\n"),
            "555 5.5.4 Unsupported option: NOTIFY\r\n");
  EXPECT_THAT(d.messages(), IsEmpty());
}

TEST(SmtpSessionDsnTest, Utf8OriginalRecipient) {
  SessionDriver d;
  d.Start();
  d.Send("EHLO client.test\r\nMAIL FROM:<a@c.test> SMTPUTF8\r\n");
  EXPECT_EQ(d.Send("RCPT TO:<j\xc3\xb6rg@example.com> ORCPT=utf-8;j\xc3\xb6rg@example.com\r\n"),
            "250 2.1.5 Ok\r\n");
  d.Send("DATA\r\nx\r\n.\r\n");
  ASSERT_EQ(d.messages().size(), 1u);
  EXPECT_THAT(d.messages()[0].recipients, ElementsAre("j\xc3\xb6rg@example.com"));
  EXPECT_EQ(d.messages()[0].recipient_dsn[0].orcpt, "utf-8;j\xc3\xb6rg@example.com");
}

TEST(SmtpSessionDsnTest, MailAndRcptLinesMayBeLonger) {
  SessionDriver d;
  d.Start();
  d.Send("EHLO client.test\r\n");
  // 512 + 500 octets with CRLF for MAIL and RCPT.
  std::string mail = "MAIL FROM:<a@c.test> ENVID=" + std::string(100, 'e') + " X-PAD=";
  mail += std::string(1010 - mail.size(), 'p') + "\r\n";
  ASSERT_EQ(mail.size(), 1012u);
  EXPECT_EQ(d.Send(mail), "555 5.5.4 Unsupported option: X-PAD\r\n");
  const std::string too_long_mail = mail.substr(0, 1010) + "p\r\n";
  EXPECT_EQ(d.Send(too_long_mail), "500 5.5.2 Line too long\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@c.test> ENVID=" + std::string(100, 'e') + "\r\n"),
            "250 2.1.0 Ok\r\n");
  std::string rcpt = "  rcpt TO:<b@example.com> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;";
  rcpt += std::string(1010 - rcpt.size(), 'o') + "\r\n";
  ASSERT_EQ(rcpt.size(), 1012u);
  EXPECT_EQ(d.Send(rcpt), "501 5.5.4 Bad ORCPT parameter syntax\r\n");  // over 500 octets
  std::string ok_rcpt = "RCPT TO:<b@example.com> ORCPT=rfc822;" + std::string(493, 'o') + "\r\n";
  EXPECT_EQ(d.Send(ok_rcpt), "250 2.1.5 Ok\r\n");
  // Other commands keep the 512-octet limit.
  EXPECT_EQ(d.Send("NOOP " + std::string(600, 'x') + "\r\n"), "500 5.5.2 Line too long\r\n");
  EXPECT_EQ(d.Send("MAILBOX " + std::string(600, 'x') + "\r\n"), "500 5.5.2 Line too long\r\n");
  // Without its LF a MAIL line is cut off at the longer limit too.
  EXPECT_EQ(d.Send("MAIL " + std::string(1000, 'x')), "");
  EXPECT_EQ(d.Send(std::string(7, 'x')), "500 5.5.2 Line too long\r\n");
}

TEST(SmtpSessionCountTest, CommandsPerVerb) {
  SessionDriver d({}, kUntrustedIp, Listener(TlsMode::kOffer, /*auth=*/true));
  d.Start();
  d.Send("EHLO client.test\r\nNOOP\r\nNOOP\r\nFOO\r\nMAIL FROM:<\r\nHELP\r\n");
  d.Send("NOOP " + std::string(600, 'x') + "\r\n");
  d.StartTls();
  d.Send("EHLO client.test\r\nAUTH LOGIN\r\n" + B64("alice") + "\r\n" + B64("s3cret") + "\r\n");
  ASSERT_TRUE(d.session().authenticated());
  d.Send("MAIL FROM:<alice@client.test>\r\nRCPT TO:<bob@example.com>\r\nBDAT 1 LAST\r\nx");
  d.Send("VRFY bob\r\nEXPN x\r\nHELO c\r\nRSET\r\nDATA\r\nQUIT\r\n");
  const uint64_t commands = d.session().commands();
  std::array<uint64_t, kCommandVerbCount> counts = d.session().TakeCommandCounts();
  auto count = [&](CommandVerb verb) { return counts[static_cast<size_t>(verb)]; };
  EXPECT_EQ(count(CommandVerb::kEhlo), 2u);
  EXPECT_EQ(count(CommandVerb::kHelo), 1u);
  EXPECT_EQ(count(CommandVerb::kNoop), 2u);
  EXPECT_EQ(count(CommandVerb::kHelp), 1u);
  EXPECT_EQ(count(CommandVerb::kStarttls), 1u);
  EXPECT_EQ(count(CommandVerb::kAuth), 1u);  // the two SASL lines are not commands
  EXPECT_EQ(count(CommandVerb::kMail), 1u);
  EXPECT_EQ(count(CommandVerb::kRcpt), 1u);
  EXPECT_EQ(count(CommandVerb::kBdat), 1u);
  EXPECT_EQ(count(CommandVerb::kData), 1u);  // refused (no MAIL), still a DATA
  EXPECT_EQ(count(CommandVerb::kVrfy), 1u);
  EXPECT_EQ(count(CommandVerb::kExpn), 1u);
  EXPECT_EQ(count(CommandVerb::kRset), 1u);
  EXPECT_EQ(count(CommandVerb::kQuit), 1u);
  // FOO, the unparseable MAIL, the over-long line.
  EXPECT_EQ(count(CommandVerb::kUnknown), 3u);
  uint64_t sum = 0;
  for (uint64_t c : counts) sum += c;
  EXPECT_EQ(sum, commands);
  // Taking them resets them.
  counts = d.session().TakeCommandCounts();
  for (uint64_t c : counts) EXPECT_EQ(c, 0u);
}

TEST(SmtpSessionCountTest, VerbNames) {
  EXPECT_EQ(kCommandVerbCount, 15u);
  std::vector<std::string_view> names;
  for (size_t i = 0; i < kCommandVerbCount; ++i) {
    names.push_back(CommandVerbName(static_cast<CommandVerb>(i)));
  }
  // Indexed by the parser's verb enum, whose order is its own business.
  EXPECT_THAT(names,
              UnorderedElementsAre("EHLO", "HELO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP",
                                   "QUIT", "HELP", "VRFY", "EXPN", "STARTTLS", "AUTH", "UNKNOWN"));
}

}  // namespace
}  // namespace postern::engine
