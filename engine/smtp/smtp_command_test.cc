#include "engine/smtp/smtp_command.h"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace postern::engine {
namespace {

using Verb = SmtpCommand::Verb;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;

SmtpCommand ParseOk(std::string_view line) {
  absl::StatusOr<SmtpCommand> cmd = ParseSmtpCommand(line);
  EXPECT_TRUE(cmd.ok()) << "line: " << line << " status: " << cmd.status();
  return cmd.ok() ? *std::move(cmd) : SmtpCommand{};
}

// The reply the session would send for a rejected line.
std::string ErrorReply(std::string_view line) {
  absl::StatusOr<SmtpCommand> cmd = ParseSmtpCommand(line);
  EXPECT_FALSE(cmd.ok()) << "line: " << line;
  return cmd.ok() ? "" : std::string(cmd.status().message());
}

TEST(SmtpCommandTest, VerbsAreCaseInsensitive) {
  const std::pair<std::string_view, Verb> cases[] = {
      {"EHLO a", Verb::kEhlo},       {"helo a", Verb::kHelo},     {"DaTa", Verb::kData},
      {"rset", Verb::kRset},         {"noop", Verb::kNoop},       {"QUIT", Verb::kQuit},
      {"help", Verb::kHelp},         {"vrfy bob", Verb::kVrfy},   {"expn list", Verb::kExpn},
      {"StartTLS", Verb::kStarttls}, {"AUTH PLAIN", Verb::kAuth}, {"bdat 10 LAST", Verb::kBdat},
  };
  for (const auto& [line, verb] : cases) {
    EXPECT_EQ(ParseOk(line).verb, verb) << line;
  }
}

TEST(SmtpCommandTest, UnknownVerbIs500) {
  for (std::string_view line : {"", "FOO", "MAILX FROM:<a@b>", "GET / HTTP/1.1", "EHL"}) {
    absl::StatusOr<SmtpCommand> cmd = ParseSmtpCommand(line);
    ASSERT_FALSE(cmd.ok()) << line;
    EXPECT_EQ(cmd.status().code(), absl::StatusCode::kUnimplemented);
    EXPECT_EQ(cmd.status().message(), "500 5.5.2 Error: command not recognized");
  }
}

TEST(SmtpCommandTest, EhloKeepsNameAndRequiresIt) {
  EXPECT_EQ(ParseOk("EHLO mail.example.com").argument, "mail.example.com");
  EXPECT_EQ(ParseOk("HELO  [192.0.2.1]  ").argument, "[192.0.2.1]");
  EXPECT_EQ(ErrorReply("EHLO"), "501 5.5.4 Syntax: EHLO hostname");
  EXPECT_EQ(ErrorReply("HELO "), "501 5.5.4 Syntax: HELO hostname");
  // Control and non-ASCII bytes would end up in the Received header.
  EXPECT_EQ(ErrorReply(std::string_view("EHLO a\0b", 8)), "501 5.5.4 Syntax: EHLO hostname");
  EXPECT_EQ(ErrorReply("EHLO h\xc3\xa9llo"), "501 5.5.4 Syntax: EHLO hostname");
}

TEST(SmtpCommandTest, MailFromBasic) {
  SmtpCommand cmd = ParseOk("MAIL FROM:<alice@example.com>");
  EXPECT_EQ(cmd.verb, Verb::kMail);
  EXPECT_EQ(cmd.path, "alice@example.com");
  EXPECT_THAT(cmd.parameters, IsEmpty());
}

TEST(SmtpCommandTest, MailToleratesSpaceAfterColonAndCase) {
  EXPECT_EQ(ParseOk("MAIL FROM: <a@b.example>").path, "a@b.example");
  EXPECT_EQ(ParseOk("mail from:<a@b.example>").path, "a@b.example");
  EXPECT_EQ(ParseOk("MAIL From:  <a@b.example>  ").path, "a@b.example");
}

TEST(SmtpCommandTest, NullSenderOnlyForMail) {
  EXPECT_EQ(ParseOk("MAIL FROM:<>").path, "");
  EXPECT_EQ(ErrorReply("RCPT TO:<>"), "501 5.5.4 Bad recipient address syntax");
}

TEST(SmtpCommandTest, PostmasterWithoutDomainOnlyForRcpt) {
  EXPECT_EQ(ParseOk("RCPT TO:<Postmaster>").path, "Postmaster");
  EXPECT_EQ(ErrorReply("MAIL FROM:<postmaster>"), "501 5.5.4 Bad sender address syntax");
  EXPECT_EQ(ErrorReply("RCPT TO:<bob>"), "501 5.5.4 Bad recipient address syntax");
}

TEST(SmtpCommandTest, DomainKeptAsGiven) {
  EXPECT_EQ(ParseOk("RCPT TO:<Bob@Example.COM>").path, "Bob@Example.COM");
  EXPECT_EQ(ParseOk("RCPT TO:<bob@[192.0.2.1]>").path, "bob@[192.0.2.1]");
  EXPECT_EQ(ParseOk("RCPT TO:<bob@[IPv6:2001:db8::1]>").path, "bob@[IPv6:2001:db8::1]");
}

TEST(SmtpCommandTest, QuotedLocalPart) {
  EXPECT_EQ(ParseOk("MAIL FROM:<\"a b\"@example.com>").path, "\"a b\"@example.com");
  // '>' and '@' inside quotes do not end the path or the local part.
  EXPECT_EQ(ParseOk("RCPT TO:<\"a>b@c\"@example.com>").path, "\"a>b@c\"@example.com");
  EXPECT_EQ(ParseOk("RCPT TO:<\"a\\\"b\"@example.com>").path, "\"a\\\"b\"@example.com");
  EXPECT_EQ(ErrorReply("RCPT TO:<\"ab@example.com>"), "501 5.5.4 Bad recipient address syntax");
}

TEST(SmtpCommandTest, SourceRouteStripped) {
  EXPECT_EQ(ParseOk("RCPT TO:<@x.example,@y.example:a@b.example>").path, "a@b.example");
  EXPECT_EQ(ParseOk("MAIL FROM:<@x.example:a@b.example>").path, "a@b.example");
  EXPECT_EQ(ErrorReply("RCPT TO:<@x.example:>"), "501 5.5.4 Bad recipient address syntax");
  EXPECT_EQ(ErrorReply("RCPT TO:<@x.example,a@b.example>"),
            "501 5.5.4 Bad recipient address syntax");
  EXPECT_EQ(ErrorReply("RCPT TO:<@:a@b.example>"), "501 5.5.4 Bad recipient address syntax");
}

TEST(SmtpCommandTest, RejectsBadAddresses) {
  const std::string_view bad[] = {
      "RCPT TO:<a@b.example",           // unbalanced
      "RCPT TO:<a<b@c.example>",        // stray '<'
      "RCPT TO:<a b@c.example>",        // space outside quotes
      "RCPT TO:<a@>",                   // empty domain
      "RCPT TO:<@b.example>",           // empty local part (and no route colon)
      "RCPT TO:<a@b..example>",         // empty label
      "RCPT TO:<a@b.example.>",         // trailing dot
      "RCPT TO:<a@b_ex(ample)>",        // specials in domain
      "RCPT TO:<a@[1.2.3.4>",           // unterminated literal
      "RCPT TO:<a(b)@c.example>",       // specials in local part
      "RCPT TO:<a@b@c.example>",        // two '@'
      "RCPT TO:<a@b.example\xff>",      // not UTF-8
      "RCPT TO:<a@b.example\xc0\xaf>",  // overlong UTF-8
  };
  for (std::string_view line : bad) {
    EXPECT_EQ(ErrorReply(line), "501 5.5.4 Bad recipient address syntax") << line;
  }
}

TEST(SmtpCommandTest, RejectsControlCharacters) {
  for (char c : {'\0', '\x01', '\t', '\r', '\x7f'}) {
    std::string line = "RCPT TO:<a";
    line += c;
    line += "b@example.com>";
    EXPECT_EQ(ErrorReply(line), "501 5.5.4 Bad recipient address syntax") << int{c};
    std::string quoted = "RCPT TO:<\"a";
    quoted += c;
    quoted += "b\"@example.com>";
    EXPECT_EQ(ErrorReply(quoted), "501 5.5.4 Bad recipient address syntax") << int{c};
  }
}

TEST(SmtpCommandTest, RequiresBracketsAndKeyword) {
  EXPECT_EQ(ErrorReply("MAIL FROM:a@b.example"), "501 5.5.4 Syntax: MAIL FROM:<address>");
  EXPECT_EQ(ErrorReply("MAIL TO:<a@b.example>"), "501 5.5.4 Syntax: MAIL FROM:<address>");
  EXPECT_EQ(ErrorReply("MAIL"), "501 5.5.4 Syntax: MAIL FROM:<address>");
  EXPECT_EQ(ErrorReply("RCPT FROM:<a@b.example>"), "501 5.5.4 Syntax: RCPT TO:<address>");
  EXPECT_EQ(ErrorReply("RCPT TO"), "501 5.5.4 Syntax: RCPT TO:<address>");
}

TEST(SmtpCommandTest, PathLengthLimit) {
  // 254 octets between the brackets is the most RFC 5321 4.5.3.1.3 allows.
  const std::string domain = "example.com";
  const std::string local_ok(254 - 1 - domain.size(), 'a');
  EXPECT_EQ(ParseOk("RCPT TO:<" + local_ok + "@" + domain + ">").path.size(), 254u);
  EXPECT_EQ(ErrorReply("RCPT TO:<" + local_ok + "a@" + domain + ">"), "501 5.5.4 Path too long");
}

TEST(SmtpCommandTest, Utf8Addresses) {
  // The parser accepts well-formed UTF-8; SMTPUTF8 is the session's business.
  EXPECT_EQ(ParseOk("RCPT TO:<j\xc3\xb6rg@b\xc3\xbc"
                    "cher.example>")
                .path,
            "j\xc3\xb6rg@b\xc3\xbc"
            "cher.example");
  EXPECT_TRUE(HasNonAscii("j\xc3\xb6rg"));
  EXPECT_FALSE(HasNonAscii("joerg"));
}

TEST(SmtpCommandTest, EsmtpParameters) {
  SmtpCommand cmd =
      ParseOk("MAIL FROM:<a@b.example> size=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ314159");
  EXPECT_THAT(cmd.parameters,
              ElementsAre(Pair("SIZE", "1000"), Pair("BODY", "8BITMIME"), Pair("SMTPUTF8", ""),
                          Pair("RET", "HDRS"), Pair("ENVID", "QQ314159")));
  SmtpCommand rcpt =
      ParseOk("RCPT TO:<c@d.example>  NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c+2Bx@d.example");
  EXPECT_THAT(rcpt.parameters, ElementsAre(Pair("NOTIFY", "SUCCESS,FAILURE"),
                                           Pair("ORCPT", "rfc822;c+2Bx@d.example")));
}

TEST(SmtpCommandTest, BadEsmtpParameters) {
  EXPECT_EQ(ErrorReply("MAIL FROM:<a@b.example>SIZE=1"), "501 5.5.4 Bad ESMTP parameter syntax");
  EXPECT_EQ(ErrorReply("MAIL FROM:<a@b.example> SIZE="), "501 5.5.4 Bad ESMTP parameter syntax");
  EXPECT_EQ(ErrorReply("MAIL FROM:<a@b.example> =1"), "501 5.5.4 Bad ESMTP parameter syntax");
  EXPECT_EQ(ErrorReply("MAIL FROM:<a@b.example> -X=1"), "501 5.5.4 Bad ESMTP parameter syntax");
  EXPECT_EQ(ErrorReply("MAIL FROM:<a@b.example> A_B=1"), "501 5.5.4 Bad ESMTP parameter syntax");
  EXPECT_EQ(ErrorReply("MAIL FROM:<a@b.example> X=a=b"), "501 5.5.4 Bad ESMTP parameter syntax");
  EXPECT_EQ(ErrorReply(std::string_view("MAIL FROM:<a@b.example> X=\x01", 27)),
            "501 5.5.4 Bad ESMTP parameter syntax");
  EXPECT_EQ(ErrorReply("MAIL FROM:<a@b.example> SIZE=1 size=2"),
            "501 5.5.4 Duplicate ESMTP parameter");
}

TEST(SmtpCommandTest, CommandsWithoutArguments) {
  EXPECT_EQ(ErrorReply("DATA x"), "501 5.5.4 Syntax: DATA");
  EXPECT_EQ(ErrorReply("RSET x"), "501 5.5.4 Syntax: RSET");
  EXPECT_EQ(ErrorReply("STARTTLS x"), "501 5.5.4 Syntax: STARTTLS");
  EXPECT_EQ(ErrorReply("VRFY"), "501 5.5.4 Syntax: VRFY address");
  EXPECT_EQ(ParseOk("DATA  ").verb, Verb::kData);
  EXPECT_EQ(ParseOk("NOOP anything goes").argument, "anything goes");
  EXPECT_EQ(ParseOk("QUIT now").verb, Verb::kQuit);
  EXPECT_EQ(ParseOk("AUTH PLAIN AGJvYgBzZWNyZXQ=").argument, "PLAIN AGJvYgBzZWNyZXQ=");
}

TEST(SmtpCommandTest, SyntaxErrorsAreInvalidArgument) {
  absl::StatusOr<SmtpCommand> cmd = ParseSmtpCommand("MAIL FROM:<");
  ASSERT_FALSE(cmd.ok());
  EXPECT_EQ(cmd.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SmtpCommandTest, MailboxDomain) {
  EXPECT_EQ(MailboxDomain("a@b.example"), "b.example");
  EXPECT_EQ(MailboxDomain("\"x@y\"@b.example"), "b.example");
  EXPECT_EQ(MailboxDomain("postmaster"), "");
  EXPECT_EQ(MailboxDomain(""), "");
}

TEST(SmtpCommandTest, Xtext) {
  EXPECT_TRUE(IsXtext("", false));
  EXPECT_TRUE(IsXtext("QQ314159", false));
  EXPECT_TRUE(IsXtext("a+2Bb+3D!~;\\", false));
  EXPECT_FALSE(IsXtext("a+2b", false));  // hex digits are upper case
  EXPECT_FALSE(IsXtext("a+2", false));
  EXPECT_FALSE(IsXtext("a+", false));
  EXPECT_FALSE(IsXtext("a+GG", false));
  EXPECT_FALSE(IsXtext("a=b", false));
  EXPECT_FALSE(IsXtext("a b", false));
  EXPECT_FALSE(IsXtext(std::string_view("a\0b", 3), false));
  EXPECT_FALSE(IsXtext("a\x7f", false));
  EXPECT_FALSE(IsXtext("j\xc3\xb6rg", false));
  EXPECT_TRUE(IsXtext("j\xc3\xb6rg", true));
}

TEST(SmtpCommandTest, Notify) {
  EXPECT_EQ(CanonicalNotify("NEVER"), "NEVER");
  EXPECT_EQ(CanonicalNotify("never"), "NEVER");
  EXPECT_EQ(CanonicalNotify("success,Failure"), "SUCCESS,FAILURE");
  EXPECT_EQ(CanonicalNotify("DELAY,SUCCESS,FAILURE"), "DELAY,SUCCESS,FAILURE");
  for (std::string_view bad :
       {"", "NEVER,SUCCESS", "FAILURE,NEVER", "SUCCESS,SUCCESS", "SUCCESS,", ",SUCCESS",
        "SUCCESS,,FAILURE", "ALWAYS", "SUCCESS FAILURE", "NEVER,NEVER"}) {
    EXPECT_EQ(CanonicalNotify(bad), "") << bad;
  }
}

TEST(SmtpCommandTest, Orcpt) {
  EXPECT_TRUE(IsValidOrcpt("rfc822;bob@example.com", false));
  EXPECT_TRUE(IsValidOrcpt("RFC822;b+2Bx@example.com", false));
  EXPECT_TRUE(IsValidOrcpt("x-local;a;b", false));  // ';' is xtext after the first
  EXPECT_TRUE(IsValidOrcpt("utf-8;j\xc3\xb6rg@example.de", true));
  EXPECT_FALSE(IsValidOrcpt("utf-8;j\xc3\xb6rg@example.de", false));
  for (std::string_view bad : {"", "rfc822", "rfc822;", ";bob@example.com", "rfc 822;bob",
                               "rfc822;b+2bx@example.com", "rfc822;a+", "rfc(822);a"}) {
    EXPECT_FALSE(IsValidOrcpt(bad, false)) << bad;
  }
  const std::string longest = "rfc822;" + std::string(kMaxOrcptLength - 7, 'a');
  EXPECT_TRUE(IsValidOrcpt(longest, false));
  EXPECT_FALSE(IsValidOrcpt(longest + "a", false));
}

TEST(SmtpCommandTest, VerbNames) {
  EXPECT_EQ(SmtpVerbName(Verb::kStarttls), "STARTTLS");
  EXPECT_EQ(SmtpVerbName(Verb::kUnknown), "UNKNOWN");
}

}  // namespace
}  // namespace postern::engine
