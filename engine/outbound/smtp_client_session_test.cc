#include "engine/outbound/smtp_client_session.h"

#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace postern::engine {
namespace {

using Event = SmtpClientSession::Event;
using Tls = SmtpClientOptions::Tls;
using Kind = ConnectionOutcome::Kind;
using Outcome = RecipientResult::Outcome;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

SmtpClientOptions Options(Tls tls = Tls::kOpportunistic) {
  SmtpClientOptions options;
  options.helo_name = "out.test";
  options.tls = tls;
  return options;
}

// An EHLO reply offering `keywords`.
std::string Ehlo(const std::vector<std::string>& keywords) {
  std::string reply = keywords.empty() ? "250 mx.test\r\n" : "250-mx.test\r\n";
  for (size_t i = 0; i < keywords.size(); ++i) {
    absl::StrAppend(&reply, i + 1 == keywords.size() ? "250 " : "250-", keywords[i], "\r\n");
  }
  return reply;
}

constexpr std::string_view kGreeting = "220 mx.test ESMTP ready\r\n";
constexpr std::string_view kBody = "Subject: hi\r\n\r\nhello\r\n";  // 22 octets

OutboundMessage Message(std::vector<std::string> recipients = {"bob@b.test"},
                        std::string body = std::string(kBody)) {
  OutboundMessage m;
  m.sender = "alice@a.test";
  for (std::string& r : recipients) m.recipients.push_back({std::move(r), "", ""});
  m.body = std::move(body);
  return m;
}

// Plays the event loop: feeds server bytes (at once or one octet at a
// time), processes after every read, starts the queued messages whenever
// the session is ready, then QUITs. Collects what the client writes.
class Driver {
 public:
  explicit Driver(SmtpClientOptions options = Options()) : session_(std::move(options)) {}

  std::string Server(std::string_view bytes, bool split = false) {
    std::string out;
    if (split) {
      for (char c : bytes) {
        session_.Receive(std::string_view(&c, 1));
        Pump(&out);
      }
    } else {
      session_.Receive(bytes);
      Pump(&out);
    }
    return out;
  }

  void Pump(std::string* out) {
    for (;;) {
      event_ = session_.Process(out);
      if (event_ == Event::kMessageDone) {
        results_.push_back(*session_.TakeResult());
        continue;
      }
      if (event_ == Event::kReady) {
        if (!queue_.empty()) {
          const OutboundMessage* next = queue_.front();
          queue_.pop_front();
          EXPECT_TRUE(session_.StartMessage(*next, out).ok());
          continue;
        }
        if (quit_when_idle_ && !quit_sent_) {
          quit_sent_ = true;
          EXPECT_TRUE(session_.Quit(out).ok());
          continue;
        }
      }
      if (event_ == Event::kClosed || event_ == Event::kFailed) {
        if (std::optional<MessageResult> r = session_.TakeResult()) results_.push_back(*r);
      }
      return;
    }
  }

  std::string TlsStarted() {
    std::string out;
    session_.TlsStarted(&out);
    Pump(&out);
    return out;
  }

  void Send(const OutboundMessage* m) { queue_.push_back(m); }
  void set_quit_when_idle(bool quit) { quit_when_idle_ = quit; }
  SmtpClientSession& session() { return session_; }
  Event event() const { return event_; }
  std::vector<MessageResult>& results() { return results_; }

 private:
  SmtpClientSession session_;
  Event event_ = Event::kNeedInput;
  std::deque<const OutboundMessage*> queue_;
  bool quit_when_idle_ = true;
  bool quit_sent_ = false;
  std::vector<MessageResult> results_;
};

struct Step {
  std::string server;
  std::string client;  // what the client must write in response
};

// Runs `steps` against `d`, checking the client's bytes after each.
void Converse(Driver& d, const std::vector<Step>& steps, bool split) {
  for (size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(d.Server(steps[i].server, split), steps[i].client) << "step " << i;
  }
}

std::string Summary(const RecipientResult& r) {
  const char* outcome = r.outcome == Outcome::kDelivered   ? "delivered"
                        : r.outcome == Outcome::kTemporary ? "temporary"
                                                           : "permanent";
  return absl::StrCat(r.address, " ", outcome, " ", r.code, " ", r.enhanced_code, " ", r.text);
}

std::vector<std::string> Summaries(const MessageResult& m) {
  std::vector<std::string> s;
  for (const RecipientResult& r : m.recipients) s.push_back(Summary(r));
  return s;
}

TEST(SmtpClientSessionTest, PipelinedMixedRecipients) {
  const OutboundMessage m = Message({"bob@b.test", "nobody@b.test", "carol@b.test"});
  for (bool split : {false, true}) {
    SCOPED_TRACE(split ? "byte by byte" : "whole");
    Driver d;
    d.Send(&m);
    Converse(d,
             {
                 {std::string(kGreeting), "EHLO out.test\r\n"},
                 {Ehlo({"PIPELINING", "SIZE 1000000", "ENHANCEDSTATUSCODES"}),
                  "MAIL FROM:<alice@a.test> SIZE=22\r\n"
                  "RCPT TO:<bob@b.test>\r\n"
                  "RCPT TO:<nobody@b.test>\r\n"
                  "RCPT TO:<carol@b.test>\r\n"
                  "DATA\r\n"},
                 // Every reply of the batch in one read.
                 {"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550-5.1.1 No such\r\n550 5.1.1 user\r\n"
                  "250 2.1.5 Ok\r\n354 Go ahead\r\n",
                  std::string(kBody) + ".\r\n"},
                 {"250 2.0.0 Ok: queued as X1\r\n", "QUIT\r\n"},
                 {"221 2.0.0 Bye\r\n", ""},
             },
             split);
    EXPECT_EQ(d.event(), Event::kClosed);
    EXPECT_EQ(d.session().outcome().kind, Kind::kOk);
    ASSERT_EQ(d.results().size(), 1u);
    const MessageResult& r = d.results()[0];
    EXPECT_THAT(Summaries(r), ElementsAre("bob@b.test delivered 250 2.0.0 Ok: queued as X1",
                                          "nobody@b.test permanent 550 5.1.1 No such user",
                                          "carol@b.test delivered 250 2.0.0 Ok: queued as X1"));
    ASSERT_TRUE(r.data_reply.has_value());
    EXPECT_EQ(r.data_reply->code, 250);
    EXPECT_EQ(r.connection.kind, Kind::kOk);
    EXPECT_FALSE(r.tls);
    EXPECT_FALSE(r.sent_with_bdat);
    EXPECT_EQ(d.session().banner_host(), "mx.test");
    EXPECT_THAT(d.session().extensions().keywords,
                ElementsAre("PIPELINING", "SIZE", "ENHANCEDSTATUSCODES"));
    EXPECT_EQ(d.session().extensions().size_limit, 1000000u);
  }
}

TEST(SmtpClientSessionTest, WithoutPipeliningOneCommandPerReply) {
  const OutboundMessage m = Message({"bob@b.test", "carol@b.test"});
  for (bool split : {false, true}) {
    Driver d;
    d.Send(&m);
    Converse(d,
             {
                 {std::string(kGreeting), "EHLO out.test\r\n"},
                 {Ehlo({"8BITMIME"}), "MAIL FROM:<alice@a.test>\r\n"},
                 {"250 Ok\r\n", "RCPT TO:<bob@b.test>\r\n"},
                 {"451 4.3.0 Try later\r\n", "RCPT TO:<carol@b.test>\r\n"},
                 {"250 Ok\r\n", "DATA\r\n"},
                 {"354 Go\r\n", std::string(kBody) + ".\r\n"},
                 {"250 Ok\r\n", "QUIT\r\n"},
             },
             split);
    ASSERT_EQ(d.results().size(), 1u);
    EXPECT_THAT(Summaries(d.results()[0]), ElementsAre("bob@b.test temporary 451 4.3.0 Try later",
                                                       "carol@b.test delivered 250 2.0.0 Ok"));
  }
}

TEST(SmtpClientSessionTest, PipeliningCanBeTurnedOff) {
  SmtpClientOptions options = Options();
  options.use_pipelining = false;
  Driver d(options);
  const OutboundMessage m = Message();
  d.Send(&m);
  d.Server(kGreeting);
  EXPECT_EQ(d.Server(Ehlo({"PIPELINING"})), "MAIL FROM:<alice@a.test>\r\n");
}

TEST(SmtpClientSessionTest, MultiLineEhloSplitAnywhere) {
  const std::string ehlo =
      "250-mx.test greets out.test\r\n250-pipelining\r\n250-SIZE\r\n250-8BITMIME\r\n"
      "250-SMTPUTF8\r\n250-CHUNKING\r\n250-DSN\r\n250-AUTH PLAIN LOGIN\r\n"
      "250-X_BAD KEYWORD\r\n250 ENHANCEDSTATUSCODES\r\n";
  for (bool split : {false, true}) {
    Driver d;
    d.set_quit_when_idle(false);
    d.Server(kGreeting);
    d.Server(ehlo, split);
    EXPECT_EQ(d.event(), Event::kReady);
    const ServerExtensions& e = d.session().extensions();
    EXPECT_TRUE(e.pipelining && e.size && e.eight_bit_mime && e.smtputf8 && e.chunking && e.dsn &&
                e.enhanced_status_codes);
    EXPECT_FALSE(e.starttls);
    EXPECT_EQ(e.size_limit, 0u);  // SIZE without a value: no fixed limit
    EXPECT_THAT(e.keywords, ElementsAre("PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "CHUNKING",
                                        "DSN", "AUTH", "ENHANCEDSTATUSCODES"));
  }
}

TEST(SmtpClientSessionTest, HeloFallbackOnEhlo5xx) {
  const OutboundMessage m = Message();
  Driver d(Options(Tls::kOpportunistic));
  d.Send(&m);
  EXPECT_EQ(d.Server(kGreeting), "EHLO out.test\r\n");
  EXPECT_EQ(d.Server("502 5.5.2 Command not recognized\r\n"), "HELO out.test\r\n");
  EXPECT_EQ(d.Server("250 mx.test\r\n"), "MAIL FROM:<alice@a.test>\r\n");
  EXPECT_TRUE(d.session().used_helo());
  EXPECT_THAT(d.session().extensions().keywords, testing::IsEmpty());
}

TEST(SmtpClientSessionTest, HeloFallbackUnderRequiredTlsSendsNoMail) {
  Driver d(Options(Tls::kRequired));
  const OutboundMessage m = Message();
  d.Send(&m);
  d.Server(kGreeting);
  d.Server("500 5.5.1 What?\r\n");
  EXPECT_EQ(d.Server("250 mx.test\r\n"), "QUIT\r\n");
  EXPECT_EQ(d.event(), Event::kFailed);
  EXPECT_EQ(d.session().outcome().kind, Kind::kTlsUnavailable);
}

TEST(SmtpClientSessionTest, EhloTemporaryFailureAndRejectedGreeting) {
  {
    Driver d;
    d.Server(kGreeting);
    EXPECT_EQ(d.Server("454 4.7.0 Not now\r\n"), "QUIT\r\n");
    EXPECT_EQ(d.event(), Event::kFailed);
    EXPECT_EQ(d.session().outcome().kind, Kind::kRejected);
    EXPECT_EQ(d.session().outcome().reason, "ehlo-rejected");
  }
  {
    Driver d;
    EXPECT_EQ(d.Server("554 5.7.1 Go away\r\n"), "QUIT\r\n");
    EXPECT_EQ(d.event(), Event::kFailed);
    EXPECT_EQ(d.session().outcome().reason, "greeting-rejected");
    ASSERT_TRUE(d.session().outcome().reply.has_value());
    EXPECT_EQ(d.session().outcome().reply->code, 554);
  }
  {
    // 421 is the server closing, at the greeting as anywhere else.
    Driver d;
    EXPECT_EQ(d.Server("421 4.3.2 Busy\r\n"), "");
    EXPECT_EQ(d.event(), Event::kClosed);
    EXPECT_EQ(d.session().outcome().kind, Kind::kServiceClosing);
  }
}

TEST(SmtpClientSessionTest, StartTlsThenExtensionsAreReadAgain) {
  for (bool split : {false, true}) {
    Driver d(Options(Tls::kOpportunistic));
    const OutboundMessage m = Message();
    d.Send(&m);
    d.Server(kGreeting, split);
    EXPECT_EQ(d.Server(Ehlo({"PIPELINING", "STARTTLS", "DSN"}), split), "STARTTLS\r\n");
    // A reply injected behind the 220 in plaintext is never read.
    EXPECT_EQ(d.Server("220 2.0.0 Ready\r\n250 2.1.0 injected\r\n", split), "");
    EXPECT_EQ(d.event(), Event::kStartTls);
    d.Server("more junk\r\n", split);
    EXPECT_EQ(d.event(), Event::kStartTls);
    EXPECT_EQ(d.session().discarded_after_starttls(), 31u);
    EXPECT_FALSE(d.session().tls_active());
    EXPECT_EQ(d.TlsStarted(), "EHLO out.test\r\n");
    EXPECT_TRUE(d.session().tls_active());
    // Pre-TLS PIPELINING is forgotten: commands go one at a time now.
    EXPECT_EQ(d.Server(Ehlo({"SIZE 5000"}), split), "MAIL FROM:<alice@a.test> SIZE=22\r\n");
    EXPECT_FALSE(d.session().extensions().pipelining);
    EXPECT_FALSE(d.session().extensions().dsn);
    EXPECT_EQ(d.Server("250 ok\r\n", split), "RCPT TO:<bob@b.test>\r\n");
    EXPECT_EQ(d.Server("250 ok\r\n", split), "DATA\r\n");
    EXPECT_EQ(d.Server("354 go\r\n", split), std::string(kBody) + ".\r\n");
    EXPECT_EQ(d.Server("250 ok\r\n", split), "QUIT\r\n");
    ASSERT_EQ(d.results().size(), 1u);
    EXPECT_TRUE(d.results()[0].tls);
  }
}

TEST(SmtpClientSessionTest, RequiredTlsWithoutStartTlsNeverSendsMail) {
  Driver d(Options(Tls::kRequired));
  const OutboundMessage m = Message();
  d.Send(&m);
  std::string wire = d.Server(kGreeting);
  wire += d.Server(Ehlo({"PIPELINING", "SIZE 1000", "8BITMIME"}));
  EXPECT_EQ(wire, "EHLO out.test\r\nQUIT\r\n");
  EXPECT_EQ(d.event(), Event::kFailed);
  EXPECT_EQ(d.session().outcome().kind, Kind::kTlsUnavailable);
  EXPECT_EQ(d.session().outcome().reason, "starttls-not-supported");
  std::string out;
  EXPECT_EQ(d.session().StartMessage(m, &out).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(out, "");
  // More server bytes change nothing.
  EXPECT_EQ(d.Server("250 ok\r\n"), "");
  EXPECT_EQ(d.event(), Event::kFailed);
}

TEST(SmtpClientSessionTest, RequiredTlsRefusedStartTls) {
  Driver d(Options(Tls::kRequired));
  d.Server(kGreeting);
  EXPECT_EQ(d.Server(Ehlo({"STARTTLS"})), "STARTTLS\r\n");
  EXPECT_EQ(d.Server("454 4.7.0 TLS not available\r\n"), "QUIT\r\n");
  EXPECT_EQ(d.event(), Event::kFailed);
  EXPECT_EQ(d.session().outcome().kind, Kind::kTlsUnavailable);
  EXPECT_EQ(d.session().outcome().reason, "starttls-rejected");
  EXPECT_THAT(d.session().outcome().diagnostic, HasSubstr("454 4.7.0 TLS not available"));
}

TEST(SmtpClientSessionTest, OpportunisticTlsRefusedContinuesInPlaintext) {
  Driver d(Options(Tls::kOpportunistic));
  const OutboundMessage m = Message();
  d.Send(&m);
  d.Server(kGreeting);
  EXPECT_EQ(d.Server(Ehlo({"STARTTLS"})), "STARTTLS\r\n");
  EXPECT_EQ(d.Server("454 4.7.0 TLS not available\r\n"), "MAIL FROM:<alice@a.test>\r\n");
  EXPECT_FALSE(d.session().tls_active());
}

TEST(SmtpClientSessionTest, NeverTlsIgnoresStartTls) {
  Driver d(Options(Tls::kNever));
  const OutboundMessage m = Message();
  d.Send(&m);
  d.Server(kGreeting);
  EXPECT_EQ(d.Server(Ehlo({"STARTTLS"})), "MAIL FROM:<alice@a.test>\r\n");
}

TEST(SmtpClientSessionTest, TlsHandshakeFailure) {
  Driver d(Options(Tls::kRequired));
  d.Server(kGreeting);
  d.Server(Ehlo({"STARTTLS"}));
  d.Server("220 go\r\n");
  ASSERT_EQ(d.event(), Event::kStartTls);
  d.session().TlsFailed("certificate verify failed");
  std::string out;
  EXPECT_EQ(d.session().Process(&out), Event::kFailed);
  EXPECT_EQ(out, "");
  EXPECT_EQ(d.session().outcome().kind, Kind::kTlsFailed);
  EXPECT_THAT(d.session().outcome().diagnostic, HasSubstr("certificate verify failed"));
}

TEST(SmtpClientSessionTest, ServiceClosingMidTransaction) {
  const OutboundMessage m = Message({"bob@b.test", "nobody@b.test", "carol@b.test"});
  for (bool split : {false, true}) {
    Driver d;
    d.Send(&m);
    d.Server(kGreeting);
    d.Server(Ehlo({"PIPELINING"}));
    EXPECT_EQ(d.Server("250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n421 4.4.2 Timeout\r\n", split),
              "");
    EXPECT_EQ(d.event(), Event::kClosed);
    EXPECT_EQ(d.session().outcome().kind, Kind::kServiceClosing);
    ASSERT_EQ(d.results().size(), 1u);
    EXPECT_THAT(Summaries(d.results()[0]), ElementsAre("bob@b.test temporary 421 4.4.2 Timeout",
                                                       "nobody@b.test permanent 550 5.1.1 unknown",
                                                       "carol@b.test temporary 421 4.4.2 Timeout"));
    EXPECT_EQ(d.results()[0].connection.kind, Kind::kServiceClosing);
  }
}

TEST(SmtpClientSessionTest, ServiceClosingAfterData) {
  Driver d;
  const OutboundMessage m = Message();
  d.Send(&m);
  d.Server(kGreeting);
  d.Server(Ehlo({"PIPELINING"}));
  d.Server("250 ok\r\n250 ok\r\n354 go\r\n");
  EXPECT_EQ(d.Server("421 Shutting down\r\n"), "");
  ASSERT_EQ(d.results().size(), 1u);
  EXPECT_THAT(Summaries(d.results()[0]),
              ElementsAre("bob@b.test temporary 421 4.0.0 Shutting down"));
}

TEST(SmtpClientSessionTest, AllRecipientsRejectedPipelined) {
  const OutboundMessage m = Message({"x@b.test", "y@b.test"});
  const OutboundMessage second = Message({"z@b.test"});
  for (bool split : {false, true}) {
    Driver d;
    d.Send(&m);
    d.Send(&second);
    Converse(
        d,
        {
            {std::string(kGreeting), "EHLO out.test\r\n"},
            {Ehlo({"PIPELINING"}),
             "MAIL FROM:<alice@a.test>\r\nRCPT TO:<x@b.test>\r\nRCPT TO:<y@b.test>\r\n"
             "DATA\r\n"},
            // DATA's refusal is consumed, then RSET; the body never goes out.
            {"250 ok\r\n550 5.1.1 no x\r\n450 4.2.1 y busy\r\n554 5.5.1 No valid recipients\r\n",
             "RSET\r\n"},
            // The connection is reused for the next message.
            {"250 2.0.0 Ok\r\n", "MAIL FROM:<alice@a.test>\r\nRCPT TO:<z@b.test>\r\nDATA\r\n"},
            {"250 ok\r\n250 ok\r\n354 go\r\n", std::string(kBody) + ".\r\n"},
            {"250 ok\r\n", "QUIT\r\n"},
        },
        split);
    ASSERT_EQ(d.results().size(), 2u);
    EXPECT_THAT(Summaries(d.results()[0]), ElementsAre("x@b.test permanent 550 5.1.1 no x",
                                                       "y@b.test temporary 450 4.2.1 y busy"));
    EXPECT_FALSE(d.results()[0].data_reply.has_value());
    EXPECT_THAT(Summaries(d.results()[1]), ElementsAre("z@b.test delivered 250 2.0.0 ok"));
  }
}

TEST(SmtpClientSessionTest, AllRecipientsRejectedWithoutPipelining) {
  Driver d;
  const OutboundMessage m = Message({"x@b.test"});
  d.Send(&m);
  d.Server(kGreeting);
  d.Server(Ehlo({}));
  EXPECT_EQ(d.Server("250 ok\r\n"), "RCPT TO:<x@b.test>\r\n");
  EXPECT_EQ(d.Server("550 no\r\n"), "RSET\r\n");
  EXPECT_EQ(d.Server("250 ok\r\n"), "QUIT\r\n");
  ASSERT_EQ(d.results().size(), 1u);
  EXPECT_THAT(Summaries(d.results()[0]), ElementsAre("x@b.test permanent 550 5.0.0 no"));
}

TEST(SmtpClientSessionTest, DataAcceptedWithNobodyAcceptedSendsEmptyData) {
  Driver d;
  const OutboundMessage m = Message({"x@b.test"});
  d.Send(&m);
  d.Server(kGreeting);
  d.Server(Ehlo({"PIPELINING"}));
  // A broken server says 354 although no recipient was accepted.
  EXPECT_EQ(d.Server("250 ok\r\n550 no\r\n354 go\r\n"), ".\r\n");
  EXPECT_EQ(d.Server("554 no recipients\r\n"), "RSET\r\n");
  EXPECT_EQ(d.Server("250 ok\r\n"), "QUIT\r\n");
  ASSERT_EQ(d.results().size(), 1u);
  EXPECT_EQ(d.results()[0].recipients[0].code, 550);
}

TEST(SmtpClientSessionTest, MailRejectedFailsEveryRecipientWithItsReply) {
  const OutboundMessage m = Message({"x@b.test", "y@b.test"});
  Driver d;
  d.Send(&m);
  d.Server(kGreeting);
  d.Server(Ehlo({"PIPELINING"}));
  EXPECT_EQ(d.Server("553 5.7.1 Sender rejected\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n"
                     "503 5.5.1 need MAIL\r\n"),
            "RSET\r\n");
  d.Server("250 ok\r\n");
  ASSERT_EQ(d.results().size(), 1u);
  EXPECT_THAT(Summaries(d.results()[0]),
              ElementsAre("x@b.test permanent 553 5.7.1 Sender rejected",
                          "y@b.test permanent 553 5.7.1 Sender rejected"));
}

TEST(SmtpClientSessionTest, DataRefusedFailsAcceptedRecipients) {
  const OutboundMessage m = Message({"x@b.test", "y@b.test"});
  Driver d;
  d.Send(&m);
  d.Server(kGreeting);
  d.Server(Ehlo({"PIPELINING"}));
  EXPECT_EQ(d.Server("250 ok\r\n250 ok\r\n550 5.1.1 no y\r\n451 4.3.0 Later\r\n"), "RSET\r\n");
  d.Server("250 ok\r\n");
  ASSERT_EQ(d.results().size(), 1u);
  EXPECT_THAT(Summaries(d.results()[0]), ElementsAre("x@b.test temporary 451 4.3.0 Later",
                                                     "y@b.test permanent 550 5.1.1 no y"));
  ASSERT_TRUE(d.results()[0].data_reply.has_value());
  EXPECT_EQ(d.results()[0].data_reply->code, 451);
}

TEST(SmtpClientSessionTest, SizeTooBigIsRefusedWithoutSending) {
  Driver d;
  const OutboundMessage big = Message({"x@b.test", "y@b.test"}, std::string(101, 'a'));
  const OutboundMessage small = Message({"x@b.test"}, std::string(100, 'a'));
  d.Send(&big);
  d.Send(&small);
  d.Server(kGreeting);
  EXPECT_EQ(d.Server(Ehlo({"SIZE 100"})), "MAIL FROM:<alice@a.test> SIZE=100\r\n");
  ASSERT_EQ(d.results().size(), 1u);
  const MessageResult& r = d.results()[0];
  ASSERT_EQ(r.recipients.size(), 2u);
  for (const RecipientResult& rr : r.recipients) {
    EXPECT_EQ(rr.outcome, Outcome::kPermanent);
    EXPECT_EQ(rr.code, 0);
    EXPECT_EQ(rr.enhanced_code, "5.3.4");
    EXPECT_THAT(rr.text, HasSubstr("101"));
  }
}

TEST(SmtpClientSessionTest, ResultMustBeTakenBeforeQuitOrTheNextMessage) {
  Driver d;
  d.set_quit_when_idle(false);
  d.Server(kGreeting);
  d.Server(Ehlo({"SIZE 10"}));
  const OutboundMessage big = Message();
  std::string out;
  ASSERT_TRUE(d.session().StartMessage(big, &out).ok());
  EXPECT_EQ(out, "");
  EXPECT_EQ(d.session().Process(&out), Event::kMessageDone);
  EXPECT_EQ(d.session().Process(&out), Event::kMessageDone);  // until taken
  EXPECT_EQ(d.session().Quit(&out).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(d.session().StartMessage(big, &out).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(d.session().TakeResult().has_value());
  EXPECT_FALSE(d.session().TakeResult().has_value());
  EXPECT_EQ(d.session().Process(&out), Event::kReady);
  EXPECT_TRUE(d.session().Quit(&out).ok());
  EXPECT_EQ(out, "QUIT\r\n");
}

TEST(SmtpClientSessionTest, SmtpUtf8) {
  OutboundMessage flagged = Message();
  flagged.smtputf8 = true;
  OutboundMessage utf8_address = Message({"j\xc3\xb6rg@b.test"});
  {
    // Not offered: 5.6.7 for both, nothing sent (RFC 6531 3.4).
    Driver d;
    d.Send(&flagged);
    d.Send(&utf8_address);
    d.Server(kGreeting);
    EXPECT_EQ(d.Server(Ehlo({"8BITMIME"})), "QUIT\r\n");
    ASSERT_EQ(d.results().size(), 2u);
    for (const MessageResult& r : d.results()) {
      EXPECT_EQ(r.recipients[0].outcome, Outcome::kPermanent);
      EXPECT_EQ(r.recipients[0].enhanced_code, "5.6.7");
    }
  }
  {
    Driver d;
    d.Send(&utf8_address);
    d.Server(kGreeting);
    EXPECT_EQ(d.Server(Ehlo({"SMTPUTF8"})), "MAIL FROM:<alice@a.test> SMTPUTF8\r\n");
  }
}

TEST(SmtpClientSessionTest, EightBitMimeOnlyWhenOffered) {
  OutboundMessage m = Message();
  m.eight_bit = true;
  {
    Driver d;
    d.Send(&m);
    d.Server(kGreeting);
    EXPECT_EQ(d.Server(Ehlo({"8BITMIME"})), "MAIL FROM:<alice@a.test> BODY=8BITMIME\r\n");
  }
  {
    Driver d;
    d.Send(&m);
    d.Server(kGreeting);
    EXPECT_EQ(d.Server(Ehlo({})), "MAIL FROM:<alice@a.test>\r\n");
  }
}

TEST(SmtpClientSessionTest, DotStuffingAndLineEndings) {
  // Dot-unstuffed as spooled; a bare LF, a bare CR and no final line break.
  const OutboundMessage m =
      Message({"bob@b.test"}, ".\r\n..two\r\n.x\r\nmid.dle\r\n.\nbare\r.cr\r\nend.");
  Driver d;
  d.Send(&m);
  d.Server(kGreeting);
  d.Server(Ehlo({"PIPELINING"}));
  EXPECT_EQ(d.Server("250 ok\r\n250 ok\r\n354 go\r\n"),
            "..\r\n...two\r\n..x\r\nmid.dle\r\n..\r\nbare\r\n..cr\r\nend.\r\n.\r\n");
}

TEST(SmtpClientSessionTest, EmptyBody) {
  const OutboundMessage m = Message({"bob@b.test"}, "");
  Driver d;
  d.Send(&m);
  d.Server(kGreeting);
  d.Server(Ehlo({"PIPELINING"}));
  EXPECT_EQ(d.Server("250 ok\r\n250 ok\r\n354 go\r\n"), ".\r\n");
}

TEST(SmtpClientSessionTest, BdatWithChunking) {
  // The body goes out raw: no dot-stuffing, no terminator.
  const OutboundMessage m = Message({"bob@b.test", "carol@b.test"}, ".dot\r\nbody\r\n");
  for (bool split : {false, true}) {
    Driver d;
    d.Send(&m);
    Converse(d,
             {
                 {std::string(kGreeting), "EHLO out.test\r\n"},
                 {Ehlo({"PIPELINING", "CHUNKING"}),
                  "MAIL FROM:<alice@a.test>\r\nRCPT TO:<bob@b.test>\r\nRCPT TO:<carol@b.test>\r\n"},
                 {"250 ok\r\n250 ok\r\n550 no carol\r\n", "BDAT 12 LAST\r\n.dot\r\nbody\r\n"},
                 {"250 2.0.0 queued\r\n", "QUIT\r\n"},
             },
             split);
    ASSERT_EQ(d.results().size(), 1u);
    EXPECT_TRUE(d.results()[0].sent_with_bdat);
    EXPECT_THAT(Summaries(d.results()[0]),
                ElementsAre("bob@b.test delivered 250 2.0.0 queued",
                            "carol@b.test permanent 550 5.0.0 no carol"));
  }
}

TEST(SmtpClientSessionTest, BdatChunksPipelinedAndNot) {
  const OutboundMessage m = Message({"bob@b.test"}, "0123456789");
  {
    SmtpClientOptions options = Options();
    options.bdat_chunk_size = 4;
    Driver d(options);
    d.Send(&m);
    d.Server(kGreeting);
    d.Server(Ehlo({"PIPELINING", "CHUNKING"}));
    EXPECT_EQ(d.Server("250 ok\r\n250 ok\r\n"), "BDAT 4\r\n0123BDAT 4\r\n4567BDAT 2 LAST\r\n89");
    // A refused middle chunk decides, later replies are consumed, then RSET.
    EXPECT_EQ(d.Server("250 ok\r\n452 4.3.1 full\r\n503 5.5.1 no\r\n"), "RSET\r\n");
    EXPECT_EQ(d.Server("250 ok\r\n"), "QUIT\r\n");
    ASSERT_EQ(d.results().size(), 1u);
    EXPECT_THAT(Summaries(d.results()[0]), ElementsAre("bob@b.test temporary 452 4.3.1 full"));
  }
  {
    SmtpClientOptions options = Options();
    options.bdat_chunk_size = 6;
    Driver d(options);
    d.Send(&m);
    d.Server(kGreeting);
    d.Server(Ehlo({"CHUNKING"}));
    EXPECT_EQ(d.Server("250 ok\r\n"), "RCPT TO:<bob@b.test>\r\n");
    EXPECT_EQ(d.Server("250 ok\r\n"), "BDAT 6\r\n012345");
    EXPECT_EQ(d.Server("250 ok\r\n"), "BDAT 4 LAST\r\n6789");
    EXPECT_EQ(d.Server("250 done\r\n"), "QUIT\r\n");
    EXPECT_EQ(d.results()[0].recipients[0].outcome, Outcome::kDelivered);
  }
  {
    // Chunking turned off: DATA.
    SmtpClientOptions options = Options();
    options.use_chunking = false;
    Driver d(options);
    d.Send(&m);
    d.Server(kGreeting);
    EXPECT_EQ(d.Server(Ehlo({"CHUNKING"})), "MAIL FROM:<alice@a.test>\r\n");
    d.Server("250 ok\r\n");
    EXPECT_EQ(d.Server("250 ok\r\n"), "DATA\r\n");
  }
}

TEST(SmtpClientSessionTest, DsnParametersOnlyWhenOffered) {
  OutboundMessage m = Message({"bob@b.test", "carol@b.test"});
  m.dsn_ret = "hdrs";
  m.dsn_envid = "QQ314159";
  m.recipients[0].notify = "SUCCESS,FAILURE";
  m.recipients[0].orcpt = "rfc822;bob@b.test";
  m.recipients[1].notify = "FAILURE";
  {
    Driver d;
    d.Send(&m);
    d.Server(kGreeting);
    EXPECT_EQ(d.Server(Ehlo({"PIPELINING", "DSN"})),
              "MAIL FROM:<alice@a.test> RET=HDRS ENVID=QQ314159\r\n"
              "RCPT TO:<bob@b.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@b.test\r\n"
              "RCPT TO:<carol@b.test> NOTIFY=FAILURE\r\n"
              "DATA\r\n");
    d.Server("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    d.Server("250 ok\r\n");
    ASSERT_EQ(d.results().size(), 1u);
    EXPECT_TRUE(d.results()[0].dsn_passed_on);
    EXPECT_FALSE(d.results()[0].recipients[0].success_notify_not_relayed);
  }
  {
    Driver d;
    d.Send(&m);
    d.Server(kGreeting);
    EXPECT_EQ(d.Server(Ehlo({"PIPELINING"})),
              "MAIL FROM:<alice@a.test>\r\nRCPT TO:<bob@b.test>\r\nRCPT TO:<carol@b.test>\r\n"
              "DATA\r\n");
    d.Server("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    d.Server("250 ok\r\n");
    ASSERT_EQ(d.results().size(), 1u);
    const MessageResult& r = d.results()[0];
    EXPECT_FALSE(r.dsn_passed_on);
    // SUCCESS was asked for and not passed on: a "relayed" notice is due.
    EXPECT_TRUE(r.recipients[0].success_notify_not_relayed);
    EXPECT_EQ(r.recipients[0].outcome, Outcome::kDelivered);
    EXPECT_FALSE(r.recipients[1].success_notify_not_relayed);
  }
}

TEST(SmtpClientSessionTest, MalformedReplyFailsPendingRecipients) {
  const std::vector<std::string> bad_replies = {
      "250 ok\r\n25x broken\r\n", "250 ok\r\n250-a\r\n251 b\r\n", "250 ok\r\n250 ok\n",
      "250 ok\r\n" + std::string(3000, 'x')};
  for (const std::string& bad : bad_replies) {
    Driver d;
    const OutboundMessage m = Message();
    d.Send(&m);
    d.Server(kGreeting);
    d.Server(Ehlo({"PIPELINING"}));
    EXPECT_EQ(d.Server(bad), "");
    EXPECT_EQ(d.event(), Event::kFailed);
    EXPECT_EQ(d.session().outcome().kind, Kind::kProtocolError);
    EXPECT_EQ(d.session().outcome().reason, "malformed-reply");
    ASSERT_EQ(d.results().size(), 1u);
    const RecipientResult& r = d.results()[0].recipients[0];
    EXPECT_EQ(r.outcome, Outcome::kTemporary);
    EXPECT_EQ(r.code, 0);
    EXPECT_EQ(r.enhanced_code, "4.5.0");
    EXPECT_THAT(r.text, HasSubstr("malformed reply"));
    EXPECT_EQ(d.session().buffered_bytes(), 0u);
  }
}

TEST(SmtpClientSessionTest, UnexpectedReplyCodes) {
  Driver d;
  const OutboundMessage m = Message();
  d.Send(&m);
  d.Server(kGreeting);
  d.Server(Ehlo({"PIPELINING"}));
  EXPECT_EQ(d.Server("354 what\r\n"), "");  // 354 to MAIL
  EXPECT_EQ(d.event(), Event::kFailed);
  EXPECT_EQ(d.session().outcome().reason, "unexpected-reply");
  ASSERT_EQ(d.results().size(), 1u);
  EXPECT_EQ(d.results()[0].recipients[0].enhanced_code, "4.5.0");
}

TEST(SmtpClientSessionTest, IdleConnection) {
  {
    // The server times the idle connection out.
    Driver d;
    d.set_quit_when_idle(false);
    d.Server(kGreeting);
    d.Server(Ehlo({}));
    EXPECT_EQ(d.event(), Event::kReady);
    EXPECT_EQ(d.Server("421 4.4.2 Idle timeout\r\n"), "");
    EXPECT_EQ(d.event(), Event::kClosed);
    EXPECT_EQ(d.session().outcome().kind, Kind::kServiceClosing);
    EXPECT_TRUE(d.results().empty());
  }
  {
    // Anything else unasked is a broken server.
    Driver d;
    d.set_quit_when_idle(false);
    d.Server(kGreeting);
    d.Server(Ehlo({}));
    EXPECT_EQ(d.Server("250 surprise\r\n"), "");
    EXPECT_EQ(d.event(), Event::kFailed);
    EXPECT_EQ(d.session().outcome().reason, "unexpected-reply");
  }
  {
    // A partial line while idle is not acted on yet.
    Driver d;
    d.set_quit_when_idle(false);
    d.Server(kGreeting);
    d.Server(Ehlo({}));
    EXPECT_EQ(d.Server("250 sur"), "");
    EXPECT_EQ(d.event(), Event::kReady);
    EXPECT_EQ(d.session().buffered_bytes(), 7u);
  }
}

TEST(SmtpClientSessionTest, ConnectionLost) {
  {
    Driver d;
    const OutboundMessage m = Message({"x@b.test", "y@b.test"});
    d.Send(&m);
    d.Server(kGreeting);
    d.Server(Ehlo({"PIPELINING"}));
    d.Server("250 ok\r\n550 5.1.1 no\r\n");
    d.session().ConnectionLost("read timeout");
    std::string out;
    EXPECT_EQ(d.session().Process(&out), Event::kFailed);
    std::optional<MessageResult> r = d.session().TakeResult();
    ASSERT_TRUE(r.has_value());
    EXPECT_THAT(Summaries(*r),
                ElementsAre("x@b.test permanent 550 5.1.1 no",
                            "y@b.test temporary 0 4.4.2 lost connection: read timeout"));
    EXPECT_EQ(r->connection.kind, Kind::kConnectionLost);
  }
  {
    // After QUIT, the server hanging up is the normal end.
    Driver d;
    d.Server(kGreeting);
    EXPECT_EQ(d.Server(Ehlo({})), "QUIT\r\n");
    d.session().ConnectionLost("eof");
    std::string out;
    EXPECT_EQ(d.session().Process(&out), Event::kClosed);
    EXPECT_EQ(d.session().outcome().kind, Kind::kOk);
  }
}

TEST(SmtpClientSessionTest, RsetRefusedEndsTheConnection) {
  Driver d;
  const OutboundMessage m = Message({"x@b.test"});
  d.Send(&m);
  d.Server(kGreeting);
  d.Server(Ehlo({}));
  d.Server("250 ok\r\n");
  EXPECT_EQ(d.Server("550 no\r\n"), "RSET\r\n");
  EXPECT_EQ(d.Server("500 what\r\n"), "");
  EXPECT_EQ(d.event(), Event::kFailed);
  EXPECT_EQ(d.session().outcome().reason, "rset-failed");
  ASSERT_EQ(d.results().size(), 1u);
  // The recipient keeps its own result.
  EXPECT_THAT(Summaries(d.results()[0]), ElementsAre("x@b.test permanent 550 5.0.0 no"));
}

TEST(SmtpClientSessionTest, InvalidMessagesAndMisuse) {
  Driver d;
  d.set_quit_when_idle(false);
  std::string out;
  const OutboundMessage ok = Message();
  EXPECT_EQ(d.session().StartMessage(ok, &out).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(d.session().Quit(&out).code(), absl::StatusCode::kFailedPrecondition);
  d.Server(kGreeting);
  d.Server(Ehlo({"DSN"}));
  ASSERT_EQ(d.event(), Event::kReady);

  OutboundMessage none = Message({});
  OutboundMessage empty_rcpt = Message({""});
  OutboundMessage crlf = Message({"bob@b.test\r\nRSET"});
  OutboundMessage bad_sender = Message();
  bad_sender.sender = "a\n@b";
  OutboundMessage bad_ret = Message();
  bad_ret.dsn_ret = "ALL";
  OutboundMessage bad_envid = Message();
  bad_envid.dsn_envid = "a b";
  OutboundMessage bad_orcpt = Message();
  bad_orcpt.recipients[0].orcpt = "rfc822;a\rb";
  for (const OutboundMessage* m :
       {&none, &empty_rcpt, &crlf, &bad_sender, &bad_ret, &bad_envid, &bad_orcpt}) {
    EXPECT_EQ(d.session().StartMessage(*m, &out).code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(out, "");
  EXPECT_EQ(d.session().Process(&out), Event::kReady);
  EXPECT_FALSE(d.session().TakeResult().has_value());
}

}  // namespace
}  // namespace postern::engine
