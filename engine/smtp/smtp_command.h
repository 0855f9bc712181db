// SMTP command line parser (RFC 5321 section 4.1, RFC 1869 ESMTP parameters,
// RFC 6531 SMTPUTF8 addresses). Pure: bytes in, a parsed command or the reply
// to send out. No state, no allocation beyond the result; safe from any thread.
//
// Input: one command line without its terminating CRLF (the session splits
// lines and enforces the line length limit).
//
// Contract:
//  - The verb is matched case-insensitively. An unrecognised verb is an error
//    with code kUnimplemented; a recognised verb with bad arguments is an error
//    with code kInvalidArgument. In both cases status.message() is the complete
//    reply line to send, without CRLF ("500 5.5.2 ..." / "501 5.5.4 ...").
//  - MAIL and RCPT: "FROM:"/"TO:" are case-insensitive; one or more spaces
//    after the colon are tolerated (as Postfix does). The path must be in angle
//    brackets. A source route (<@x,@y:a@b>) is stripped. The domain is kept as
//    given (no case folding). The null path <> is allowed for MAIL only;
//    <postmaster> without a domain (any case) for RCPT only (RFC 5321 4.1.1.3).
//  - Addresses with control characters, unbalanced brackets or quotes, or
//    whose path exceeds 254 octets between the brackets (256 with them, RFC
//    5321 4.5.3.1.3) are rejected. Non-ASCII octets must be well-formed UTF-8;
//    whether they are allowed at all (SMTPUTF8 declared) is the session's call.
//  - ESMTP parameters are returned as (KEYWORD upper-cased, value as sent)
//    pairs in order; the value is "" for a keyword without "=value". Only the
//    generic syntax is checked here (RFC 5321 4.1.2 esmtp-param); which
//    keywords are supported, and their values, is decided by the session,
//    because that depends on the extensions the listener offers.
//  - Arguments of AUTH and BDAT are kept raw in `argument`: those commands are
//    parsed by the code that implements them.
#ifndef POSTERN_ENGINE_SMTP_SMTP_COMMAND_H_
#define POSTERN_ENGINE_SMTP_SMTP_COMMAND_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace postern::engine {

struct SmtpCommand {
  enum class Verb {
    kUnknown,
    kEhlo,
    kHelo,
    kMail,
    kRcpt,
    kData,
    kRset,
    kNoop,
    kQuit,
    kHelp,
    kVrfy,
    kExpn,
    kStarttls,
    kAuth,
    kBdat,
  };

  Verb verb = Verb::kUnknown;
  // Everything after the verb, leading and trailing blanks removed. For
  // EHLO/HELO this is the client's name; for MAIL/RCPT the raw "FROM:<...> ..."
  std::string argument;
  // MAIL/RCPT only: the mailbox without brackets and source route; "" for <>.
  std::string path;
  // MAIL/RCPT only: ESMTP parameters, keyword upper-cased, value as sent.
  std::vector<std::pair<std::string, std::string>> parameters;
};

// Parses one command line (without CRLF). See the contract above.
absl::StatusOr<SmtpCommand> ParseSmtpCommand(std::string_view line);

// The verb as written in RFC 5321 ("MAIL"); "UNKNOWN" for kUnknown.
std::string_view SmtpVerbName(SmtpCommand::Verb verb);

// The domain of a mailbox: what follows the last '@' ("" if there is none, as
// for <postmaster> or the null sender). The last '@' is right because a
// quoted local part may contain '@' but a domain never does.
std::string_view MailboxDomain(std::string_view mailbox);

// True if any octet is outside US-ASCII (the address needs SMTPUTF8).
bool HasNonAscii(std::string_view text);

// DSN parameter values (RFC 3461 4). The session decides whether DSN is
// offered; these only judge the syntax.
//
// xtext: octets 33..126 except '+' and '=', or "+XX" with two upper-case hex
// digits. With allow_utf8 (SMTPUTF8 declared, RFC 6533 3) non-ASCII octets
// are allowed too; that they are well-formed UTF-8 is the parser's check.
bool IsXtext(std::string_view value, bool allow_utf8);

// NOTIFY (RFC 3461 4.1): "NEVER", or a comma-separated list of SUCCESS,
// FAILURE and DELAY, each at most once, in any case. Returns the value
// upper-cased, in the order given ("SUCCESS,FAILURE"), or "" if invalid.
std::string CanonicalNotify(std::string_view value);

// ORCPT (RFC 3461 4.2): addr-type ";" xtext, at most kMaxOrcptLength
// octets. addr-type is an atom ("rfc822", "utf-8"); the address is not
// empty. The value is not decoded.
inline constexpr size_t kMaxOrcptLength = 500;
bool IsValidOrcpt(std::string_view value, bool allow_utf8);

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_SMTP_SMTP_COMMAND_H_
