#include "engine/smtp/smtp_command.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "common/absl_compat.h"
#include "common/utf8.h"

namespace postern::engine {
namespace {

using Verb = SmtpCommand::Verb;

struct VerbEntry {
  std::string_view name;
  Verb verb;
};

constexpr std::array<VerbEntry, 14> kVerbs = {{
    {"EHLO", Verb::kEhlo},
    {"HELO", Verb::kHelo},
    {"MAIL", Verb::kMail},
    {"RCPT", Verb::kRcpt},
    {"DATA", Verb::kData},
    {"RSET", Verb::kRset},
    {"NOOP", Verb::kNoop},
    {"QUIT", Verb::kQuit},
    {"HELP", Verb::kHelp},
    {"VRFY", Verb::kVrfy},
    {"EXPN", Verb::kExpn},
    {"STARTTLS", Verb::kStarttls},
    {"AUTH", Verb::kAuth},
    {"BDAT", Verb::kBdat},
}};

// RFC 5321 4.5.3.1.3: a path is at most 256 octets including the brackets.
constexpr size_t kMaxPathInner = 254;

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

std::string_view StripBlanks(std::string_view s) {
  while (!s.empty() && IsBlank(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsBlank(s.back())) s.remove_suffix(1);
  return s;
}

bool IsControl(unsigned char c) { return c < 0x20 || c == 0x7f; }

bool IsPrintableAscii(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

// RFC 5322 atext; octets >= 0x80 are RFC 6531 UTF-8 (validated separately).
bool IsAtext(unsigned char c) {
  if (c >= 0x80 || absl::ascii_isalnum(c)) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '/':
    case '=':
    case '?':
    case '^':
    case '_':
    case '`':
    case '{':
    case '|':
    case '}':
    case '~':
      return true;
    default:
      return false;
  }
}

// Domain or address literal. Lenient where real mail is (underscores, U-labels)
// and strict where it matters for safety (no empty labels, no specials).
bool IsValidDomain(std::string_view d) {
  if (d.empty()) return false;
  if (d.front() == '[') {
    if (d.size() < 3 || d.back() != ']') return false;
    for (unsigned char c : d.substr(1, d.size() - 2)) {
      // RFC 5321 dcontent: %d33-90 / %d94-126 (no '[', '\', ']').
      if (c < 33 || c > 126 || c == '[' || c == '\\' || c == ']') return false;
    }
    return true;
  }
  size_t label = 0;
  for (unsigned char c : d) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!(absl::ascii_isalnum(c) || c == '-' || c == '_' || c >= 0x80)) return false;
    ++label;
  }
  return label > 0;
}

// local-part "@" domain, local-part a dot-string or a quoted string.
bool IsValidMailbox(std::string_view m) {
  if (m.empty()) return false;
  size_t i = 0;
  if (m.front() == '"') {
    i = 1;
    for (;;) {
      if (i >= m.size()) return false;
      const auto c = static_cast<unsigned char>(m[i]);
      if (c == '"') break;
      if (c == '\\') {
        // quoted-pairSMTP: backslash followed by %d32-126.
        if (i + 1 >= m.size()) return false;
        const auto e = static_cast<unsigned char>(m[i + 1]);
        if (e < 32 || e > 126) return false;
        i += 2;
        continue;
      }
      // qtextSMTP: %d32-33 / %d35-91 / %d93-126, plus UTF-8.
      if (c < 32 || c == 127) return false;
      ++i;
    }
    ++i;  // the closing quote
    if (i >= m.size() || m[i] != '@') return false;
  } else {
    // Dots are not policed (consecutive or trailing dots occur in real mail
    // and Postfix accepts them); everything else must be atext.
    while (i < m.size() && m[i] != '@') {
      const auto c = static_cast<unsigned char>(m[i]);
      if (!(IsAtext(c) || c == '.')) return false;
      ++i;
    }
    if (i == 0 || i >= m.size()) return false;
  }
  return IsValidDomain(m.substr(i + 1));
}

// "@d1,@d2" (the part before ':' of a source route).
bool IsValidSourceRoute(std::string_view route) {
  while (!route.empty()) {
    if (route.front() != '@') return false;
    route.remove_prefix(1);
    const size_t comma = route.find(',');
    if (!IsValidDomain(route.substr(0, comma))) return false;
    if (comma == std::string_view::npos) return true;
    route.remove_prefix(comma + 1);
    if (route.empty()) return false;
  }
  return false;
}

bool IsKeywordChar(unsigned char c) { return absl::ascii_isalnum(c) || c == '-'; }

// RFC 5321 esmtp-value: %d33-60 / %d62-126, plus UTF-8 (RFC 6531 3.3).
bool IsValueChar(unsigned char c) { return (c >= 33 && c <= 126 && c != '=') || c >= 0x80; }

absl::Status Syntax(std::string_view reply) { return absl::InvalidArgumentError(Absl(reply)); }

absl::Status ParseParameters(std::string_view rest, SmtpCommand* cmd) {
  constexpr std::string_view kBad = "501 5.5.4 Bad ESMTP parameter syntax";
  if (rest.empty()) return absl::OkStatus();
  if (rest.front() != ' ') return Syntax(kBad);
  while (!rest.empty()) {
    if (rest.front() == ' ') {
      rest.remove_prefix(1);
      continue;
    }
    const size_t end = rest.find(' ');
    const std::string_view token = rest.substr(0, end);
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);

    const size_t eq = token.find('=');
    const std::string_view key = token.substr(0, eq);
    if (key.empty() || !absl::ascii_isalnum(static_cast<unsigned char>(key.front()))) {
      return Syntax(kBad);
    }
    for (unsigned char c : key) {
      if (!IsKeywordChar(c)) return Syntax(kBad);
    }
    std::string_view value;
    if (eq != std::string_view::npos) {
      value = token.substr(eq + 1);
      if (value.empty()) return Syntax(kBad);
      for (unsigned char c : value) {
        if (!IsValueChar(c)) return Syntax(kBad);
      }
      if (HasNonAscii(value) && !IsValidUtf8(value)) return Syntax(kBad);
    }
    std::string upper_key = absl::AsciiStrToUpper(Absl(key));
    for (const auto& [existing, unused] : cmd->parameters) {
      if (existing == upper_key) return Syntax("501 5.5.4 Duplicate ESMTP parameter");
    }
    cmd->parameters.emplace_back(std::move(upper_key), std::string(value));
  }
  return absl::OkStatus();
}

// "FROM:<path> params" / "TO:<path> params".
absl::Status ParseMailOrRcpt(std::string_view arg, bool is_mail, SmtpCommand* cmd) {
  const std::string_view prefix = is_mail ? "FROM:" : "TO:";
  const std::string_view usage =
      is_mail ? "501 5.5.4 Syntax: MAIL FROM:<address>" : "501 5.5.4 Syntax: RCPT TO:<address>";
  const std::string_view bad_address =
      is_mail ? "501 5.5.4 Bad sender address syntax" : "501 5.5.4 Bad recipient address syntax";
  if (!absl::StartsWithIgnoreCase(Absl(arg), Absl(prefix))) return Syntax(usage);
  arg.remove_prefix(prefix.size());
  while (!arg.empty() && arg.front() == ' ') arg.remove_prefix(1);
  if (arg.empty() || arg.front() != '<') return Syntax(usage);

  // Find the closing bracket, honouring quoted strings ("a>b"@example.com).
  size_t i = 1;
  bool quoted = false;
  for (; i < arg.size(); ++i) {
    const auto c = static_cast<unsigned char>(arg[i]);
    if (IsControl(c)) return Syntax(bad_address);
    if (quoted) {
      if (c == '\\') {
        ++i;
        if (i < arg.size() && IsControl(static_cast<unsigned char>(arg[i]))) {
          return Syntax(bad_address);
        }
      } else if (c == '"') {
        quoted = false;
      }
      continue;
    }
    if (c == '"') {
      quoted = true;
    } else if (c == '>') {
      break;
    } else if (c == '<' || c == ' ') {
      return Syntax(bad_address);
    }
  }
  if (i >= arg.size()) return Syntax(bad_address);  // no closing '>'
  const std::string_view inner = arg.substr(1, i - 1);
  const std::string_view rest = arg.substr(i + 1);
  if (inner.size() > kMaxPathInner) return Syntax("501 5.5.4 Path too long");
  if (HasNonAscii(inner) && !IsValidUtf8(inner)) return Syntax(bad_address);

  std::string_view mailbox = inner;
  if (!mailbox.empty() && mailbox.front() == '@') {
    const size_t colon = mailbox.find(':');
    if (colon == std::string_view::npos || !IsValidSourceRoute(mailbox.substr(0, colon))) {
      return Syntax(bad_address);
    }
    mailbox.remove_prefix(colon + 1);
    if (mailbox.empty()) return Syntax(bad_address);
  }
  if (mailbox.empty()) {
    if (!is_mail) return Syntax(bad_address);
  } else if (!IsValidMailbox(mailbox) &&
             (is_mail || !absl::EqualsIgnoreCase(Absl(mailbox), "postmaster"))) {
    return Syntax(bad_address);
  }
  cmd->path = std::string(mailbox);
  return ParseParameters(rest, cmd);
}

}  // namespace

std::string_view SmtpVerbName(SmtpCommand::Verb verb) {
  for (const auto& entry : kVerbs) {
    if (entry.verb == verb) return entry.name;
  }
  return "UNKNOWN";
}

std::string_view MailboxDomain(std::string_view mailbox) {
  const size_t at = mailbox.rfind('@');
  if (at == std::string_view::npos) return {};
  return mailbox.substr(at + 1);
}

bool HasNonAscii(std::string_view text) {
  for (unsigned char c : text) {
    if (c >= 0x80) return true;
  }
  return false;
}

bool IsXtext(std::string_view value, bool allow_utf8) {
  auto is_hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); };
  for (size_t i = 0; i < value.size(); ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    if (c == '+') {
      if (value.size() - i < 3 || !is_hex(value[i + 1]) || !is_hex(value[i + 2])) return false;
      i += 2;
    } else if (c >= 0x80) {
      if (!allow_utf8) return false;
    } else if (c < 33 || c > 126 || c == '=') {
      return false;
    }
  }
  return true;
}

std::string CanonicalNotify(std::string_view value) {
  constexpr std::string_view kKeywords[] = {"NEVER", "SUCCESS", "FAILURE", "DELAY"};
  std::string canonical;
  bool seen[std::size(kKeywords)] = {};
  size_t items = 0;
  for (;;) {
    const size_t comma = value.find(',');
    const std::string_view item = value.substr(0, comma);
    size_t k = 0;
    while (k < std::size(kKeywords) && !absl::EqualsIgnoreCase(Absl(item), Absl(kKeywords[k]))) {
      ++k;
    }
    if (k == std::size(kKeywords) || seen[k]) return "";
    seen[k] = true;
    ++items;
    if (!canonical.empty()) canonical.push_back(',');
    canonical.append(kKeywords[k]);
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  // NEVER excludes the others (RFC 3461 4.1).
  if (seen[0] && items > 1) return "";
  return canonical;
}

bool IsValidOrcpt(std::string_view value, bool allow_utf8) {
  if (value.size() > kMaxOrcptLength) return false;
  const size_t semicolon = value.find(';');
  if (semicolon == 0 || semicolon == std::string_view::npos || semicolon + 1 == value.size()) {
    return false;
  }
  for (unsigned char c : value.substr(0, semicolon)) {
    if (c >= 0x80 || !IsAtext(c)) return false;
  }
  return IsXtext(value.substr(semicolon + 1), allow_utf8);
}

absl::StatusOr<SmtpCommand> ParseSmtpCommand(std::string_view line) {
  line = StripBlanks(line);
  const size_t space = line.find(' ');
  const std::string_view verb_text = line.substr(0, space);
  SmtpCommand cmd;
  for (const auto& entry : kVerbs) {
    if (absl::EqualsIgnoreCase(Absl(verb_text), Absl(entry.name))) {
      cmd.verb = entry.verb;
      break;
    }
  }
  if (cmd.verb == Verb::kUnknown) {
    return absl::UnimplementedError("500 5.5.2 Error: command not recognized");
  }
  const std::string_view arg =
      space == std::string_view::npos ? std::string_view() : StripBlanks(line.substr(space + 1));
  cmd.argument = std::string(arg);

  switch (cmd.verb) {
    case Verb::kEhlo:
    case Verb::kHelo:
      // The name ends up in the Received header: printable ASCII only, so a
      // client cannot inject header bytes.
      if (arg.empty() || !IsPrintableAscii(arg)) {
        return Syntax(cmd.verb == Verb::kEhlo ? "501 5.5.4 Syntax: EHLO hostname"
                                              : "501 5.5.4 Syntax: HELO hostname");
      }
      break;
    case Verb::kMail:
    case Verb::kRcpt:
      if (absl::Status s = ParseMailOrRcpt(arg, cmd.verb == Verb::kMail, &cmd); !s.ok()) return s;
      break;
    case Verb::kData:
    case Verb::kRset:
    case Verb::kStarttls:
      if (!arg.empty()) {
        std::string reply = "501 5.5.4 Syntax: ";
        reply.append(SmtpVerbName(cmd.verb));
        return absl::InvalidArgumentError(Absl(reply));
      }
      break;
    case Verb::kVrfy:
      if (arg.empty()) return Syntax("501 5.5.4 Syntax: VRFY address");
      break;
    case Verb::kNoop:
    case Verb::kQuit:  // arguments tolerated: the client wants to leave anyway
    case Verb::kHelp:
    case Verb::kExpn:
    case Verb::kAuth:
    case Verb::kBdat:
    case Verb::kUnknown:
      break;
  }
  return cmd;
}

}  // namespace postern::engine
