#include "queue/dsn_builder.h"

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace postern::queue {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// 2026-03-04 05:06:07 UTC, a Wednesday.
const absl::Time kNow =
    absl::FromCivil(absl::CivilSecond(2026, 3, 4, 5, 6, 7), absl::UTCTimeZone());
const absl::Time kArrival = kNow - absl::Hours(30);

constexpr char kHeaders[] =
    "Received: from client.example ([192.0.2.9]) by relay.example\r\n"
    "From: Alice <alice@example.org>\r\n"
    "To: Bob <bob@example.net>\r\n"
    "Subject: hello\r\n"
    "Message-ID: <m1@example.org>\r\n";
constexpr char kText[] = "Hi Bob,\r\n\r\nsee you.\r\n";

std::string Original() { return absl::StrCat(kHeaders, "\r\n", kText); }

void SetTs(google::protobuf::Timestamp* ts, absl::Time t) {
  ts->set_seconds(absl::ToUnixSeconds(t));
}

v1::Recipient* AddRecipient(v1::Envelope* env, const std::string& address,
                            const std::string& notify = "") {
  v1::Recipient* r = env->add_recipients();
  r->set_address(address);
  r->set_notify(notify);
  return r;
}

v1::Envelope Envelope() {
  v1::Envelope env;
  env.set_queue_id("0005F3A1B2C3D403");
  env.set_sender("alice@example.org");
  SetTs(env.mutable_arrival_time(), kArrival);
  v1::Recipient* r = AddRecipient(&env, "bob@example.net");
  r->set_state(v1::RECIPIENT_STATE_FAILED);
  r->set_status("5.1.1");
  r->set_last_error("550 5.1.1 <bob@example.net>: Recipient address rejected: unknown user");
  r->set_remote_mta("mx.example.net[192.0.2.1]");
  SetTs(r->mutable_final_time(), kNow - absl::Minutes(1));
  return env;
}

DsnInput Input(const v1::Envelope& env, const std::string& body, DsnKind kind,
               std::vector<int> recipients = {0}) {
  DsnInput in;
  in.original = &env;
  in.original_body = body;
  in.kind = kind;
  in.recipients = std::move(recipients);
  in.reporting_mta = "relay.example";
  in.dsn_queue_id = "0005F3A1B2C3E503";
  in.now = kNow;
  return in;
}

// A small MIME reader, strict where the builder must be: CRLF only,
// folded fields unfolded, one level of multipart.
struct Entity {
  std::multimap<std::string, std::string> fields;  // lower-case name -> value
  std::string body;

  std::string Get(const std::string& name) const {
    auto it = fields.find(absl::AsciiStrToLower(name));
    return it == fields.end() ? "" : it->second;
  }
  size_t Count(const std::string& name) const { return fields.count(absl::AsciiStrToLower(name)); }
};

std::multimap<std::string, std::string> ParseFields(std::string_view section) {
  std::multimap<std::string, std::string> fields;
  std::string unfolded;
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < section.size()) {
    size_t end = section.find("\r\n", start);
    if (end == std::string_view::npos) end = section.size();
    std::string line(section.substr(start, end - start));
    start = end + 2;
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      EXPECT_FALSE(lines.empty()) << "continuation without a field";
      if (!lines.empty()) lines.back() += line;  // RFC 5322 unfolding: drop the CRLF
    } else {
      lines.push_back(line);
    }
  }
  for (const std::string& line : lines) {
    const size_t colon = line.find(':');
    EXPECT_NE(colon, std::string::npos) << "not a field: " << line;
    if (colon == std::string::npos) continue;
    std::string value = line.substr(colon + 1);
    fields.emplace(absl::AsciiStrToLower(line.substr(0, colon)),
                   std::string(absl::StripAsciiWhitespace(value)));
  }
  return fields;
}

Entity ParseEntity(std::string_view text) {
  Entity e;
  const size_t end = text.find("\r\n\r\n");
  EXPECT_NE(end, std::string_view::npos) << "no header/body separator";
  if (end == std::string_view::npos) return e;
  e.fields = ParseFields(text.substr(0, end + 2));
  e.body = std::string(text.substr(end + 4));
  return e;
}

std::string Param(const std::string& content_type, const std::string& name) {
  const std::string key = name + "=";
  size_t at = content_type.find(key);
  if (at == std::string::npos) return "";
  at += key.size();
  if (content_type[at] == '"')
    return content_type.substr(at + 1, content_type.find('"', at + 1) - at - 1);
  return content_type.substr(at, content_type.find(';', at) - at);
}

// Splits a multipart body at its delimiters (RFC 2046 5.1.1: the CRLF
// before "--boundary" belongs to the delimiter).
std::vector<std::string> SplitParts(const std::string& body, const std::string& boundary) {
  std::vector<std::string> parts;
  const std::string delimiter = "\r\n--" + boundary;
  size_t at = body.find(delimiter);
  EXPECT_NE(at, std::string::npos);
  while (at != std::string::npos) {
    size_t after = at + delimiter.size();
    if (body.compare(after, 2, "--") == 0) {
      EXPECT_EQ(body.substr(after + 2), "\r\n") << "text after the close delimiter";
      return parts;
    }
    EXPECT_EQ(body.compare(after, 2, "\r\n"), 0);
    after += 2;
    const size_t next = body.find(delimiter, after);
    EXPECT_NE(next, std::string::npos) << "no close delimiter";
    if (next == std::string::npos) break;
    parts.push_back(body.substr(after, next - after));
    at = next;
  }
  ADD_FAILURE() << "no close delimiter";
  return parts;
}

// Groups of a message/delivery-status body, separated by empty lines.
std::vector<std::multimap<std::string, std::string>> StatusGroups(const std::string& body) {
  std::vector<std::multimap<std::string, std::string>> groups;
  size_t start = 0;
  while (start < body.size()) {
    size_t end = body.find("\r\n\r\n", start);
    if (end == std::string::npos) end = body.size() - 2;
    groups.push_back(ParseFields(std::string_view(body).substr(start, end + 2 - start)));
    start = end + 4;
  }
  return groups;
}

std::string Field(const std::multimap<std::string, std::string>& group, const std::string& name) {
  auto it = group.find(absl::AsciiStrToLower(name));
  return it == group.end() ? "<absent>" : it->second;
}

struct Report {
  Entity top;
  std::string boundary;
  std::vector<Entity> parts;
  std::vector<std::multimap<std::string, std::string>> groups;  // of the second part
};

Report Parse(const std::string& body) {
  Report r;
  r.top = ParseEntity(body);
  r.boundary = Param(r.top.Get("Content-Type"), "boundary");
  EXPECT_FALSE(r.boundary.empty());
  // The preamble and the first delimiter: the body starts after an empty line.
  for (const std::string& p : SplitParts("\r\n" + r.top.body, r.boundary)) {
    r.parts.push_back(ParseEntity(p));
  }
  if (r.parts.size() >= 2) r.groups = StatusGroups(r.parts[1].body);
  return r;
}

void ExpectWellFormedLines(const std::string& body) {
  size_t line = 0;
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] == '\r') {
      ASSERT_LT(i + 1, body.size()) << "CR at the end";
      ASSERT_EQ(body[i + 1], '\n') << "bare CR at " << i;
      ++i;
      line = 0;
    } else {
      ASSERT_NE(body[i], '\n') << "bare LF at " << i;
      ++line;
      ASSERT_LE(line, 998u) << "line too long at " << i;
    }
  }
  ASSERT_TRUE(absl::EndsWith(body, "\r\n"));
}

TEST(DsnBuilderTest, FailureNoticeHasTheThreePartsAndEveryField) {
  const v1::Envelope env = Envelope();
  const std::string original = Original();
  absl::StatusOr<Dsn> dsn = BuildDsn(Input(env, original, DsnKind::kFailure));
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  ExpectWellFormedLines(dsn->body);

  // The envelope of the notice.
  EXPECT_EQ(dsn->envelope.queue_id(), "0005F3A1B2C3E503");
  EXPECT_EQ(dsn->envelope.sender(), "");
  ASSERT_EQ(dsn->envelope.recipients_size(), 1);
  EXPECT_EQ(dsn->envelope.recipients(0).address(), "alice@example.org");
  EXPECT_EQ(dsn->envelope.recipients(0).state(), v1::RECIPIENT_STATE_PENDING);
  EXPECT_TRUE(dsn->envelope.is_dsn());
  EXPECT_EQ(dsn->envelope.arrival_time().seconds(), absl::ToUnixSeconds(kNow));
  EXPECT_EQ(dsn->envelope.body_size(), dsn->body.size());
  EXPECT_FALSE(dsn->envelope.smtputf8());
  EXPECT_FALSE(dsn->envelope.eight_bit_mime());

  const Report r = Parse(dsn->body);
  EXPECT_EQ(r.top.Get("From"), "Mail Delivery System <MAILER-DAEMON@relay.example>");
  EXPECT_EQ(r.top.Get("To"), "<alice@example.org>");
  EXPECT_EQ(r.top.Get("Subject"), "Undelivered Mail Returned to Sender");
  EXPECT_EQ(r.top.Get("Date"), "Wed, 04 Mar 2026 05:06:07 +0000");
  EXPECT_EQ(r.top.Get("Message-ID"), "<0005F3A1B2C3E503@relay.example>");
  EXPECT_EQ(r.top.Get("Auto-Submitted"), "auto-replied");
  EXPECT_EQ(r.top.Get("MIME-Version"), "1.0");
  EXPECT_TRUE(absl::StartsWith(r.top.Get("Content-Type"),
                               "multipart/report; report-type=delivery-status; boundary=\""))
      << r.top.Get("Content-Type");
  EXPECT_EQ(r.top.Count("Content-Type"), 1u);

  ASSERT_EQ(r.parts.size(), 3u);
  EXPECT_EQ(r.parts[0].Get("Content-Type"), "text/plain; charset=us-ascii");
  EXPECT_THAT(r.parts[0].body, HasSubstr("relay.example"));
  EXPECT_THAT(r.parts[0].body,
              HasSubstr("<bob@example.net>: host mx.example.net[192.0.2.1] said:"));
  EXPECT_THAT(r.parts[0].body, HasSubstr("unknown user"));

  EXPECT_EQ(r.parts[1].Get("Content-Type"), "message/delivery-status");
  ASSERT_EQ(r.groups.size(), 2u);
  const auto& msg = r.groups[0];
  EXPECT_EQ(Field(msg, "Reporting-MTA"), "dns; relay.example");
  EXPECT_EQ(Field(msg, "X-Postern-Queue-ID"), "0005F3A1B2C3D403");
  EXPECT_EQ(Field(msg, "Original-Envelope-Id"), "<absent>");
  EXPECT_EQ(Field(msg, "Arrival-Date"), "Mon, 02 Mar 2026 23:06:07 +0000");
  const auto& rcpt = r.groups[1];
  EXPECT_EQ(Field(rcpt, "Original-Recipient"), "<absent>");
  EXPECT_EQ(Field(rcpt, "Final-Recipient"), "rfc822; bob@example.net");
  EXPECT_EQ(Field(rcpt, "Action"), "failed");
  EXPECT_EQ(Field(rcpt, "Status"), "5.1.1");
  EXPECT_EQ(Field(rcpt, "Remote-MTA"), "dns; mx.example.net");
  EXPECT_EQ(Field(rcpt, "Diagnostic-Code"),
            "smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected: unknown user");
  EXPECT_EQ(Field(rcpt, "Last-Attempt-Date"), "Wed, 04 Mar 2026 05:05:07 +0000");
  EXPECT_EQ(Field(rcpt, "Will-Retry-Until"), "<absent>");

  EXPECT_EQ(r.parts[2].Get("Content-Type"), "message/rfc822");
  EXPECT_EQ(r.parts[2].body, original);  // returned octet for octet
}

TEST(DsnBuilderTest, NullSenderGetsNoNotice) {
  v1::Envelope env = Envelope();
  env.set_sender("");
  EXPECT_THAT(RecipientsToNotify(env, DsnKind::kFailure, {0}), IsEmpty());
  EXPECT_EQ(BuildDsn(Input(env, Original(), DsnKind::kFailure)).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(DsnBuilderTest, NoticeIsNeverAnsweredWithANotice) {
  v1::Envelope env = Envelope();
  env.set_is_dsn(true);
  EXPECT_THAT(RecipientsToNotify(env, DsnKind::kFailure, {0}), IsEmpty());
  EXPECT_EQ(BuildDsn(Input(env, Original(), DsnKind::kFailure)).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(DsnBuilderTest, NotifyNeverIsSkipped) {
  v1::Envelope env = Envelope();
  AddRecipient(&env, "never@example.net", "NEVER");
  AddRecipient(&env, "carol@example.net", "FAILURE");
  EXPECT_THAT(RecipientsToNotify(env, DsnKind::kFailure, {0, 1, 2}), ElementsAre(0, 2));
  EXPECT_THAT(RecipientsToNotify(env, DsnKind::kDelay, {1}), IsEmpty());

  absl::StatusOr<Dsn> dsn = BuildDsn(Input(env, Original(), DsnKind::kFailure, {1, 2}));
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  const Report r = Parse(dsn->body);
  ASSERT_EQ(r.groups.size(), 2u);  // per-message + carol only
  EXPECT_EQ(Field(r.groups[1], "Final-Recipient"), "rfc822; carol@example.net");
  EXPECT_THAT(dsn->body, Not(HasSubstr("never@example.net")));

  EXPECT_EQ(BuildDsn(Input(env, Original(), DsnKind::kFailure, {1})).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(DsnBuilderTest, NotifyChoosesTheKinds) {
  v1::Envelope env;
  env.set_sender("alice@example.org");
  AddRecipient(&env, "a@x", "");  // absent: FAILURE,DELAY
  AddRecipient(&env, "b@x", "SUCCESS");
  AddRecipient(&env, "c@x", "FAILURE");
  AddRecipient(&env, "d@x", "SUCCESS,FAILURE,DELAY");
  AddRecipient(&env, "e@x", "delay");  // case does not matter
  const std::vector<int> all = {0, 1, 2, 3, 4};
  EXPECT_THAT(RecipientsToNotify(env, DsnKind::kFailure, all), ElementsAre(0, 2, 3));
  EXPECT_THAT(RecipientsToNotify(env, DsnKind::kDelay, all), ElementsAre(0, 3, 4));
  EXPECT_THAT(RecipientsToNotify(env, DsnKind::kDelivered, all), ElementsAre(1, 3));
  EXPECT_THAT(RecipientsToNotify(env, DsnKind::kRelayed, all), ElementsAre(1, 3));
  // Out of range and repeated candidates are dropped.
  EXPECT_THAT(RecipientsToNotify(env, DsnKind::kFailure, {2, -1, 9, 2, 0}), ElementsAre(2, 0));
  // A recipient already warned is not warned again.
  env.mutable_recipients(0)->set_delay_notified(true);
  EXPECT_THAT(RecipientsToNotify(env, DsnKind::kDelay, all), ElementsAre(3, 4));
}

TEST(DsnBuilderTest, SuccessOnlyRecipientGetsNoFailureNotice) {
  v1::Envelope env = Envelope();
  env.mutable_recipients(0)->set_notify("SUCCESS");
  EXPECT_EQ(BuildDsn(Input(env, Original(), DsnKind::kFailure)).status().code(),
            absl::StatusCode::kFailedPrecondition);

  v1::Recipient* r = env.mutable_recipients(0);
  r->set_state(v1::RECIPIENT_STATE_DELIVERED);
  r->set_status("2.0.0");
  r->set_last_error("250 2.0.0 Ok: queued as 4XYZ");
  absl::StatusOr<Dsn> dsn = BuildDsn(Input(env, Original(), DsnKind::kDelivered));
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  const Report r2 = Parse(dsn->body);
  EXPECT_EQ(r2.top.Get("Subject"), "Successful Mail Delivery Report");
  ASSERT_EQ(r2.groups.size(), 2u);
  EXPECT_EQ(Field(r2.groups[1], "Action"), "delivered");
  EXPECT_EQ(Field(r2.groups[1], "Status"), "2.0.0");
  // Success notices return the headers only, whatever RET says.
  ASSERT_EQ(r2.parts.size(), 3u);
  EXPECT_EQ(r2.parts[2].Get("Content-Type"), "text/rfc822-headers");

  dsn = BuildDsn(Input(env, Original(), DsnKind::kRelayed));
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  EXPECT_EQ(Field(Parse(dsn->body).groups[1], "Action"), "relayed");
}

TEST(DsnBuilderTest, RetHdrsReturnsOnlyTheHeaderSection) {
  v1::Envelope env = Envelope();
  env.set_dsn_ret("HDRS");
  absl::StatusOr<Dsn> dsn = BuildDsn(Input(env, Original(), DsnKind::kFailure));
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  const Report r = Parse(dsn->body);
  ASSERT_EQ(r.parts.size(), 3u);
  EXPECT_EQ(r.parts[2].Get("Content-Type"), "text/rfc822-headers");
  EXPECT_EQ(r.parts[2].body, kHeaders);
  EXPECT_THAT(dsn->body, Not(HasSubstr("see you")));
}

TEST(DsnBuilderTest, LargeBodyReturnsHeadersOnly) {
  const v1::Envelope env = Envelope();
  std::string big = absl::StrCat(kHeaders, "\r\n");
  while (big.size() < 60 * 1024) big += std::string(70, 'x') + "\r\n";
  DsnInput in = Input(env, big, DsnKind::kFailure);
  absl::StatusOr<Dsn> dsn = BuildDsn(in);
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  Report r = Parse(dsn->body);
  ASSERT_EQ(r.parts.size(), 3u);
  EXPECT_EQ(r.parts[2].Get("Content-Type"), "text/rfc822-headers");
  EXPECT_LT(dsn->body.size(), 4096u);

  // Exactly at the limit it comes back whole.
  in.max_returned_body = big.size();
  dsn = BuildDsn(in);
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  r = Parse(dsn->body);
  EXPECT_EQ(r.parts[2].Get("Content-Type"), "message/rfc822");
  EXPECT_EQ(r.parts[2].body, big);

  // Headers beyond the limit too: no third part.
  in.max_returned_body = 100;
  dsn = BuildDsn(in);
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  r = Parse(dsn->body);
  EXPECT_EQ(r.parts.size(), 2u);
  EXPECT_THAT(r.parts[0].body, Not(HasSubstr("attached")));
}

TEST(DsnBuilderTest, UncarriableBodyReturnsHeadersOnly) {
  const v1::Envelope env = Envelope();
  // BDAT mail is not line-checked: a bare LF, or a 2000-octet line.
  for (const std::string& text : {std::string("one\ntwo\r\n"), std::string(2000, 'y') + "\r\n"}) {
    const std::string body = absl::StrCat(kHeaders, "\r\n", text);
    absl::StatusOr<Dsn> dsn = BuildDsn(Input(env, body, DsnKind::kFailure));
    ASSERT_TRUE(dsn.ok()) << dsn.status();
    ExpectWellFormedLines(dsn->body);
    EXPECT_EQ(Parse(dsn->body).parts[2].Get("Content-Type"), "text/rfc822-headers");
  }
}

TEST(DsnBuilderTest, EnvidAndOrcptAreEchoedDecoded) {
  v1::Envelope env = Envelope();
  env.set_dsn_envid("QQ+2B314");
  env.mutable_recipients(0)->set_orcpt("rfc822;Bob+2BAlias@Example.net");
  absl::StatusOr<Dsn> dsn = BuildDsn(Input(env, Original(), DsnKind::kFailure));
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  const Report r = Parse(dsn->body);
  ASSERT_EQ(r.groups.size(), 2u);
  EXPECT_EQ(Field(r.groups[0], "Original-Envelope-Id"), "QQ+314");
  EXPECT_EQ(Field(r.groups[1], "Original-Recipient"), "rfc822; Bob+Alias@Example.net");
  EXPECT_EQ(Field(r.groups[1], "Final-Recipient"), "rfc822; bob@example.net");
}

TEST(DsnBuilderTest, XtextThatDecodesToLineBreaksIsShownAsReceived) {
  v1::Envelope env = Envelope();
  env.set_dsn_envid("x+0D+0ABcc:+20evil@example.com");
  env.mutable_recipients(0)->set_orcpt("rfc822;a+0D+0AX-Evil:+201");
  absl::StatusOr<Dsn> dsn = BuildDsn(Input(env, Original(), DsnKind::kFailure));
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  ExpectWellFormedLines(dsn->body);
  const Report r = Parse(dsn->body);
  EXPECT_EQ(Field(r.groups[0], "Original-Envelope-Id"), "x+0D+0ABcc:+20evil@example.com");
  EXPECT_EQ(Field(r.groups[0], "Bcc"), "<absent>");
  EXPECT_EQ(Field(r.groups[1], "Original-Recipient"), "rfc822; a+0D+0AX-Evil:+201");
}

TEST(DsnBuilderTest, DiagnosticCannotInjectLines) {
  v1::Envelope env = Envelope();
  env.mutable_recipients(0)->set_last_error(
      "550-5.1.1 first line\r\n550 5.1.1 second\r\nAction: delivered\r\n\r\nX: y");
  absl::StatusOr<Dsn> dsn = BuildDsn(Input(env, Original(), DsnKind::kFailure));
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  ExpectWellFormedLines(dsn->body);
  const Report r = Parse(dsn->body);
  ASSERT_EQ(r.groups.size(), 2u);
  EXPECT_EQ(r.groups[1].count("action"), 1u);
  EXPECT_EQ(Field(r.groups[1], "Action"), "failed");
  EXPECT_EQ(Field(r.groups[1], "Diagnostic-Code"),
            "smtp; 550-5.1.1 first line 550 5.1.1 second Action: delivered X: y");
}

TEST(DsnBuilderTest, DelayNoticeSaysDelayed) {
  v1::Envelope env = Envelope();
  v1::Recipient* r = env.mutable_recipients(0);
  r->set_state(v1::RECIPIENT_STATE_DEFERRED);
  r->clear_final_time();
  r->set_status("4.4.1");
  r->set_last_error("connect to mx.example.net[192.0.2.1]:25: Connection timed out");
  r->set_remote_mta("");
  const std::string original = Original();  // DsnInput borrows it
  DsnInput in = Input(env, original, DsnKind::kDelay);
  in.will_retry_until = kArrival + absl::Hours(120);
  absl::StatusOr<Dsn> dsn = BuildDsn(in);
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  ExpectWellFormedLines(dsn->body);
  const Report rep = Parse(dsn->body);
  EXPECT_EQ(rep.top.Get("Subject"), "Delayed Mail (still being retried)");
  ASSERT_EQ(rep.groups.size(), 2u);
  const auto& g = rep.groups[1];
  EXPECT_EQ(Field(g, "Action"), "delayed");
  EXPECT_EQ(Field(g, "Status"), "4.4.1");
  EXPECT_EQ(Field(g, "Diagnostic-Code"),
            "X-Postern; connect to mx.example.net[192.0.2.1]:25: Connection timed out");
  EXPECT_EQ(Field(g, "Remote-MTA"), "<absent>");
  EXPECT_EQ(Field(g, "Last-Attempt-Date"), "<absent>");
  EXPECT_EQ(Field(g, "Will-Retry-Until"), "Sat, 07 Mar 2026 23:06:07 +0000");
  EXPECT_THAT(absl::StrReplaceAll(rep.parts[0].body, {{"\r\n", " "}}),
              HasSubstr("until Sat, 07 Mar 2026 23:06:07 +0000."));
  // RET is for failure notices: a warning returns the headers (RFC 3461 4.3).
  ASSERT_EQ(rep.parts.size(), 3u);
  EXPECT_EQ(rep.parts[2].Get("Content-Type"), "text/rfc822-headers");
}

TEST(DsnBuilderTest, StatusClassFollowsTheAction) {
  v1::Envelope env = Envelope();
  env.mutable_recipients(0)->set_status("4.4.7");  // deferred until the queue gave up
  absl::StatusOr<Dsn> dsn = BuildDsn(Input(env, Original(), DsnKind::kFailure));
  ASSERT_TRUE(dsn.ok());
  EXPECT_EQ(Field(Parse(dsn->body).groups[1], "Status"), "5.4.7");

  for (const char* bad : {"", "5.1", "x.1.1", "2.0.0", "5.1234.1"}) {
    env.mutable_recipients(0)->set_status(bad);
    dsn = BuildDsn(Input(env, Original(), DsnKind::kFailure));
    ASSERT_TRUE(dsn.ok());
    EXPECT_EQ(Field(Parse(dsn->body).groups[1], "Status"), "5.0.0") << bad;
  }
}

TEST(DsnBuilderTest, TlsFailureNamesTheResult) {
  v1::Envelope env = Envelope();
  v1::Recipient* r = env.mutable_recipients(0);
  r->set_status("4.7.5");
  r->set_last_error("");
  r->set_tls_result("certificate-host-mismatch");
  r->set_remote_mta("[192.0.2.7]");
  absl::StatusOr<Dsn> dsn = BuildDsn(Input(env, Original(), DsnKind::kFailure));
  ASSERT_TRUE(dsn.ok());
  Report rep = Parse(dsn->body);
  EXPECT_EQ(Field(rep.groups[1], "Diagnostic-Code"),
            "X-Postern; TLS failed: certificate-host-mismatch");
  EXPECT_EQ(Field(rep.groups[1], "Remote-MTA"), "dns; 192.0.2.7");
  EXPECT_EQ(Field(rep.groups[1], "Status"), "5.7.5");

  // A reply text without the result gets it appended; one with it is kept.
  r->set_last_error("TLS required: pin-mismatch at mx.example.net[192.0.2.1]");
  r->set_tls_result("pin-mismatch");
  dsn = BuildDsn(Input(env, Original(), DsnKind::kFailure));
  ASSERT_TRUE(dsn.ok());
  EXPECT_EQ(Field(Parse(dsn->body).groups[1], "Diagnostic-Code"),
            "X-Postern; TLS required: pin-mismatch at mx.example.net[192.0.2.1]");
  r->set_last_error("454 4.7.0 TLS not available due to local problem");
  r->set_tls_result("starttls-not-supported");
  dsn = BuildDsn(Input(env, Original(), DsnKind::kFailure));
  ASSERT_TRUE(dsn.ok());
  EXPECT_EQ(Field(Parse(dsn->body).groups[1], "Diagnostic-Code"),
            "smtp; 454 4.7.0 TLS not available due to local problem (TLS: starttls-not-supported)");
}

TEST(DsnBuilderTest, BoundaryNeverOccursInTheContent) {
  const v1::Envelope env = Envelope();
  absl::StatusOr<Dsn> first = BuildDsn(Input(env, Original(), DsnKind::kFailure));
  ASSERT_TRUE(first.ok());
  const std::string taken = Parse(first->body).boundary;
  // An original that contains that very boundary (and the next candidate).
  std::string sneaky = absl::StrCat(kHeaders, "\r\n--", taken, "\r\n", taken, "1", "\r\n");
  absl::StatusOr<Dsn> dsn = BuildDsn(Input(env, sneaky, DsnKind::kFailure));
  ASSERT_TRUE(dsn.ok());
  const Report r = Parse(dsn->body);
  EXPECT_NE(r.boundary, taken);
  ASSERT_EQ(r.parts.size(), 3u);
  EXPECT_EQ(r.parts[2].body, sneaky);
  for (const Entity& part : r.parts) EXPECT_THAT(part.body, Not(HasSubstr(r.boundary)));
  EXPECT_LE(r.boundary.size(), 70u);
}

TEST(DsnBuilderTest, LongTextIsFoldedUnder998Octets) {
  v1::Envelope env = Envelope();
  std::string words;
  while (words.size() < 3000) words += "word ";
  env.mutable_recipients(0)->set_last_error("550 5.7.1 " + words + std::string(2500, 'z'));
  AddRecipient(&env, "second@example.net")->set_last_error(std::string(5000, 'q'));
  absl::StatusOr<Dsn> dsn = BuildDsn(Input(env, Original(), DsnKind::kFailure, {0, 1}));
  ASSERT_TRUE(dsn.ok());
  ExpectWellFormedLines(dsn->body);
  const Report r = Parse(dsn->body);
  ASSERT_EQ(r.groups.size(), 3u);
  // Unfolded, the spaces are kept; the run without spaces is cut, not lost.
  const std::string diag = Field(r.groups[1], "Diagnostic-Code");
  EXPECT_TRUE(absl::StartsWith(diag, "smtp; 550 5.7.1 word word")) << diag.substr(0, 40);
  std::string zs;
  for (char c : diag) zs += c == 'z' ? "z" : "";
  EXPECT_EQ(zs.size(), 2500u);
  EXPECT_EQ(Field(r.groups[2], "Final-Recipient"), "rfc822; second@example.net");
  // Header fields are folded near 78 octets where spaces allow.
  for (const Entity& part : r.parts) {
    for (const auto& [name, value] : part.fields) EXPECT_LT(name.size() + value.size(), 200u);
  }
}

TEST(DsnBuilderTest, SmtpUtf8UsesTheGlobalTypes) {
  v1::Envelope env = Envelope();
  env.set_smtputf8(true);
  env.mutable_recipients(0)->set_address("b\xC3\xB6rje@example.net");  // börje
  env.mutable_recipients(0)->set_last_error("550 5.1.1 b\xC3\xB6rje unknown");
  absl::StatusOr<Dsn> dsn = BuildDsn(Input(env, Original(), DsnKind::kFailure));
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  ExpectWellFormedLines(dsn->body);
  const Report r = Parse(dsn->body);
  EXPECT_THAT(r.top.Get("Content-Type"), HasSubstr("report-type=global-delivery-status"));
  EXPECT_EQ(r.top.Get("Content-Transfer-Encoding"), "8bit");
  ASSERT_EQ(r.parts.size(), 3u);
  EXPECT_EQ(r.parts[0].Get("Content-Type"), "text/plain; charset=utf-8");
  EXPECT_EQ(r.parts[1].Get("Content-Type"), "message/global-delivery-status");
  EXPECT_EQ(Field(r.groups[1], "Final-Recipient"), "utf-8; b\xC3\xB6rje@example.net");
  EXPECT_EQ(Field(r.groups[1], "Diagnostic-Code"), "smtp; 550 5.1.1 b\xC3\xB6rje unknown");
  EXPECT_EQ(r.parts[2].Get("Content-Type"), "message/global");
  // The sender and the notice's header are ASCII: no SMTPUTF8 needed to send it.
  EXPECT_FALSE(dsn->envelope.smtputf8());
  EXPECT_TRUE(dsn->envelope.eight_bit_mime());

  // Without SMTPUTF8, 8-bit text in a diagnostic is not passed on.
  env.set_smtputf8(false);
  env.mutable_recipients(0)->set_address("borje@example.net");
  dsn = BuildDsn(Input(env, Original(), DsnKind::kFailure));
  ASSERT_TRUE(dsn.ok());
  const Report plain = Parse(dsn->body);
  EXPECT_EQ(plain.parts[1].Get("Content-Type"), "message/delivery-status");
  EXPECT_EQ(Field(plain.groups[1], "Diagnostic-Code"), "smtp; 550 5.1.1 b??rje unknown");
  EXPECT_FALSE(dsn->envelope.eight_bit_mime());
}

TEST(DsnBuilderTest, Utf8SenderNeedsSmtpUtf8) {
  v1::Envelope env = Envelope();
  env.set_smtputf8(true);
  env.set_sender("\xE7\x94\xA8\xE6\x88\xB7@example.org");
  absl::StatusOr<Dsn> dsn = BuildDsn(Input(env, Original(), DsnKind::kFailure));
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  EXPECT_TRUE(dsn->envelope.smtputf8());
  EXPECT_EQ(dsn->envelope.recipients(0).address(), env.sender());
  EXPECT_EQ(Parse(dsn->body).top.Get("To"), "<\xE7\x94\xA8\xE6\x88\xB7@example.org>");
}

TEST(DsnBuilderTest, InvalidInput) {
  const v1::Envelope env = Envelope();
  const std::string original = Original();  // DsnInput borrows it
  DsnInput in = Input(env, original, DsnKind::kFailure, {0, 3});
  EXPECT_EQ(BuildDsn(in).status().code(), absl::StatusCode::kInvalidArgument);
  in = Input(env, original, DsnKind::kFailure);
  in.original = nullptr;
  EXPECT_EQ(BuildDsn(in).status().code(), absl::StatusCode::kInvalidArgument);
  in = Input(env, original, DsnKind::kFailure);
  in.reporting_mta = "";
  EXPECT_EQ(BuildDsn(in).status().code(), absl::StatusCode::kInvalidArgument);
  in = Input(env, original, DsnKind::kFailure);
  in.dsn_queue_id = "";
  EXPECT_EQ(BuildDsn(in).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DsnBuilderTest, SeveralRecipientsOneGroupEach) {
  v1::Envelope env = Envelope();
  v1::Recipient* c = AddRecipient(&env, "carol@example.net");
  c->set_status("5.2.2");
  c->set_last_error("552 5.2.2 mailbox full");
  c->set_remote_mta("mx2.example.net[192.0.2.2]");
  absl::StatusOr<Dsn> dsn = BuildDsn(Input(env, Original(), DsnKind::kFailure, {1, 0}));
  ASSERT_TRUE(dsn.ok());
  const Report r = Parse(dsn->body);
  ASSERT_EQ(r.groups.size(), 3u);
  EXPECT_EQ(Field(r.groups[1], "Final-Recipient"), "rfc822; carol@example.net");
  EXPECT_EQ(Field(r.groups[1], "Status"), "5.2.2");
  EXPECT_EQ(Field(r.groups[1], "Remote-MTA"), "dns; mx2.example.net");
  EXPECT_EQ(Field(r.groups[2], "Final-Recipient"), "rfc822; bob@example.net");
  EXPECT_THAT(r.parts[0].body,
              HasSubstr("<carol@example.net>: host mx2.example.net[192.0.2.2] said: 552"));
}

}  // namespace
}  // namespace postern::queue
