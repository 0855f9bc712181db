#include "queue/dsn_builder.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/absl_compat.h"
#include "common/proto_time.h"
#include "common/utf8.h"
#include "google/protobuf/timestamp.pb.h"

namespace postern::queue {
namespace {

constexpr char kCrlf[] = "\r\n";
constexpr size_t kMaxLine = 998;   // RFC 5322 2.1.1, CRLF excluded
constexpr size_t kFoldWidth = 78;  // RFC 5322 2.1.1 "SHOULD"
constexpr size_t kTextWidth = 76;  // the human-readable part
constexpr size_t kMaxWord = 900;   // longer runs without a space are split
constexpr size_t kMaxBoundaryId = 40;

bool IsAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

bool HasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7F;
  });
}

// Makes text from the queue (remote replies, addresses, host names) safe for
// one header field or text line: control characters (CR and LF of a
// multi-line reply among them) become spaces, runs of spaces collapse, and
// octets >= 0x80 stay only where UTF-8 may go and only as well-formed UTF-8
// ("?" otherwise). Nothing remote can then add lines to the notice.
std::string Clean(std::string_view s, bool utf8_ok) {
  std::string out;
  out.reserve(s.size());
  bool pending_space = false;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c <= 0x20 || c == 0x7F) {
      pending_space = !out.empty();
      ++i;
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    const size_t n = Utf8SequenceLength(s, i);
    if (utf8_ok && n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out.push_back('?');
      ++i;
    }
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// RFC 3461 4: xtext, "+" followed by two hex digits encodes an octet.
bool XtextDecode(std::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '+') {
      if (i + 2 >= in.size()) return false;
      const int hi = HexValue(in[i + 1]), lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c >= '!' && c <= '~' && c != '=') {
      out->push_back(c);
    } else {
      return false;
    }
  }
  return true;
}

// The xtext value decoded (RFC 3464 reports ENVID and ORCPT decoded), or as
// received when it does not decode to printable text: a "+0D+0A" must not
// become a line break in the notice.
std::string DecodeXtextForReport(std::string_view xtext, bool utf8_ok) {
  std::string decoded;
  if (XtextDecode(xtext, &decoded) && !HasControl(decoded) &&
      (IsAscii(decoded) || (utf8_ok && IsValidUtf8(decoded)))) {
    return decoded;
  }
  return Clean(xtext, /*utf8_ok=*/false);
}

// RFC 5322 3.3 date-time in UTC. Names come from tables, not strftime, so
// the process locale cannot change them.
std::string Rfc5322Date(absl::Time t) {
  static constexpr const char* kDays[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const absl::CivilSecond cs = absl::ToCivilSecond(t, absl::UTCTimeZone());
  const int weekday = static_cast<int>(absl::GetWeekday(absl::CivilDay(cs)));  // Monday = 0
  return absl::StrFormat("%s, %02d %s %04d %02d:%02d:%02d +0000", kDays[weekday], cs.day(),
                         kMonths[cs.month() - 1], cs.year(), cs.hour(), cs.minute(), cs.second());
}

// Words of a cleaned value; a word longer than kMaxWord is cut (at a UTF-8
// character boundary) so that no line can pass 998 octets.
std::vector<std::string_view> Words(std::string_view text) {
  std::vector<std::string_view> words;
  for (absl::string_view w : absl::StrSplit(Absl(text), ' ', absl::SkipEmpty())) {
    std::string_view word = Std(w);
    while (word.size() > kMaxWord) {
      size_t cut = kMaxWord;
      while (cut > 0 && (static_cast<unsigned char>(word[cut]) & 0xC0) == 0x80) --cut;
      if (cut == 0) cut = kMaxWord;  // not UTF-8 (Clean() prevents it): cut anywhere
      words.push_back(word.substr(0, cut));
      word.remove_prefix(cut);
    }
    words.push_back(word);
  }
  return words;
}

// Appends the header field "Name: value" CRLF, folded at spaces (RFC 5322
// 2.2.3). `value` must be Clean()ed: single spaces, no control characters.
void AppendField(std::string* out, std::string_view name, std::string_view value) {
  std::string line = absl::StrCat(Absl(name), ":");
  const size_t bare = line.size();
  for (std::string_view w : Words(value)) {
    if (line.size() > bare && line.size() + 1 + w.size() > kFoldWidth) {
      absl::StrAppend(out, line, kCrlf);
      line.clear();
    }
    absl::StrAppend(&line, " ", Absl(w));
  }
  absl::StrAppend(out, line, kCrlf);
}

// Appends `text` as lines of about kTextWidth octets; lines after the first
// start with `indent`.
void AppendWrapped(std::string* out, std::string_view text, std::string_view indent = "") {
  std::string line;
  bool empty = true;
  for (std::string_view w : Words(text)) {
    if (!empty && line.size() + 1 + w.size() > kTextWidth) {
      absl::StrAppend(out, line, kCrlf);
      line = std::string(indent);
      empty = true;
    }
    if (!empty) line.push_back(' ');
    line.append(w);
    empty = false;
  }
  absl::StrAppend(out, line, kCrlf);
}

// True when `content` can be carried as is: CRLF line endings only and no
// line over kMaxLine octets. Mail received with BDAT is not line-checked.
bool IsCarriable(std::string_view content) {
  size_t line = 0;
  for (size_t i = 0; i < content.size(); ++i) {
    const char c = content[i];
    if (c == '\r') {
      if (i + 1 >= content.size() || content[i + 1] != '\n') return false;
      ++i;
      line = 0;
    } else if (c == '\n') {
      return false;
    } else if (++line > kMaxLine) {
      return false;
    }
  }
  return true;
}

// The header section of a message, CRLF of its last field included, without
// the empty line; all of it when there is no empty line.
std::string_view HeaderSection(std::string_view message) {
  if (message.substr(0, 2) == kCrlf) return {};
  const size_t end = message.find("\r\n\r\n");
  if (end == std::string_view::npos) return message;
  return message.substr(0, end + 2);
}

bool IsSmtpReply(std::string_view text) {
  return text.size() >= 3 && text[0] >= '2' && text[0] <= '5' && absl::ascii_isdigit(text[1]) &&
         absl::ascii_isdigit(text[2]) && (text.size() == 3 || text[3] == ' ' || text[3] == '-');
}

bool IsDigits(std::string_view s, size_t min, size_t max) {
  return s.size() >= min && s.size() <= max &&
         std::all_of(s.begin(), s.end(), [](char c) { return absl::ascii_isdigit(c); });
}

// recipient.status with its class made `cls` (RFC 3464 2.3.4: the Status
// agrees with the Action). A 4.x.y turns into 5.x.y when a deferral ends in
// failure (queue lifetime), and back for a delay warning; anything
// unparseable or of the wrong family becomes cls.0.0.
std::string NormalizeStatus(std::string_view status, char cls) {
  const std::vector<absl::string_view> parts = absl::StrSplit(Absl(status), '.');
  const std::string fallback = absl::StrCat(std::string(1, cls), ".0.0");
  if (parts.size() != 3 || parts[0].size() != 1 || !IsDigits(Std(parts[1]), 1, 3) ||
      !IsDigits(Std(parts[2]), 1, 3)) {
    return fallback;
  }
  const char given = parts[0][0];
  const bool success = cls == '2';
  if (success ? given != '2' : (given != '4' && given != '5')) return fallback;
  return absl::StrCat(std::string(1, cls), ".", parts[1], ".", parts[2]);
}

// "mx.example[192.0.2.1]" -> "mx.example"; "[192.0.2.1]" -> "192.0.2.1".
std::string RemoteMtaName(std::string_view remote) {
  const size_t bracket = remote.find('[');
  if (bracket == std::string_view::npos) return std::string(remote);
  if (bracket > 0) return std::string(remote.substr(0, bracket));
  std::string_view ip = remote.substr(1);
  const size_t close = ip.find(']');
  return std::string(ip.substr(0, close));
}

struct Diagnostic {
  std::string type;  // "smtp" or "X-Postern"; "" when there is none
  std::string text;
};

Diagnostic DiagnosticOf(const v1::Recipient& r, bool utf8_ok) {
  Diagnostic d;
  d.text = Clean(r.last_error(), utf8_ok);
  const std::string tls = Clean(r.tls_result(), false);
  if (!tls.empty() && d.text.find(tls) == std::string::npos) {
    d.text = d.text.empty() ? absl::StrCat("TLS failed: ", tls)
                            : absl::StrCat(d.text, " (TLS: ", tls, ")");
  }
  if (!d.text.empty()) d.type = IsSmtpReply(d.text) ? "smtp" : "X-Postern";
  return d;
}

bool NotifyAllows(std::string_view notify, DsnKind kind) {
  std::string upper = absl::AsciiStrToUpper(Absl(notify));
  bool failure = false, delay = false, success = false, never = false, any = false;
  for (absl::string_view token : absl::StrSplit(upper, ',', absl::SkipWhitespace())) {
    token = absl::StripAsciiWhitespace(token);
    any = true;
    if (token == "NEVER") never = true;
    if (token == "FAILURE") failure = true;
    if (token == "DELAY") delay = true;
    if (token == "SUCCESS") success = true;
  }
  if (never) return false;
  if (!any) failure = delay = true;  // RFC 3461 4.1: "FAILURE,DELAY" or "FAILURE"
  switch (kind) {
    case DsnKind::kFailure:
      return failure;
    case DsnKind::kDelay:
      return delay;
    case DsnKind::kRelayed:
    case DsnKind::kDelivered:
      return success;
  }
  return false;
}

struct Part {
  std::string headers;  // CRLF-terminated fields
  std::string content;
};

const char* ActionOf(DsnKind kind) {
  switch (kind) {
    case DsnKind::kFailure:
      return "failed";
    case DsnKind::kDelay:
      return "delayed";
    case DsnKind::kRelayed:
      return "relayed";
    case DsnKind::kDelivered:
      return "delivered";
  }
  return "failed";
}

char StatusClassOf(DsnKind kind) {
  switch (kind) {
    case DsnKind::kFailure:
      return '5';
    case DsnKind::kDelay:
      return '4';
    case DsnKind::kRelayed:
    case DsnKind::kDelivered:
      return '2';
  }
  return '5';
}

const char* SubjectOf(DsnKind kind) {
  switch (kind) {
    case DsnKind::kFailure:
      return "Undelivered Mail Returned to Sender";
    case DsnKind::kDelay:
      return "Delayed Mail (still being retried)";
    case DsnKind::kRelayed:
    case DsnKind::kDelivered:
      return "Successful Mail Delivery Report";
  }
  return "";
}

const char* Encoding(std::string_view content) { return IsAscii(content) ? "7bit" : "8bit"; }

// What the third part returns.
enum class Returned { kNothing, kHeaders, kFull };

Returned WhatToReturn(const DsnInput& in) {
  const std::string ret = absl::AsciiStrToUpper(in.original->dsn_ret());
  if (in.kind == DsnKind::kFailure && ret != "HDRS" &&
      in.original_body.size() <= in.max_returned_body && IsCarriable(in.original_body)) {
    return Returned::kFull;
  }
  const std::string_view headers = HeaderSection(in.original_body);
  if (headers.size() <= in.max_returned_body && IsCarriable(headers)) return Returned::kHeaders;
  return Returned::kNothing;
}

std::string HumanPart(const DsnInput& in, const std::vector<int>& rcpts, Returned returned,
                      const std::string& mta, bool utf8_ok) {
  std::string text;
  AppendWrapped(&text, absl::StrCat("This is the mail system at host ", mta, "."));
  text += kCrlf;
  std::string intro;
  switch (in.kind) {
    case DsnKind::kFailure:
      intro =
          "Your message could not be delivered to one or more of its recipients. The mail "
          "system has given up on them; the reasons are listed below.";
      break;
    case DsnKind::kDelay:
      intro =
          "Your message has not yet been delivered to one or more of its recipients. This is "
          "only a warning: the mail system is still trying, and you do not need to send the "
          "message again.";
      if (in.will_retry_until.has_value()) {
        absl::StrAppend(&intro, " It will keep trying until ", Rfc5322Date(*in.will_retry_until),
                        ".");
      }
      break;
    case DsnKind::kRelayed:
      intro =
          "Your message was passed on to the recipients below through a mail system that does "
          "not send delivery reports, so no further report will come for them.";
      break;
    case DsnKind::kDelivered:
      intro = "Your message was delivered to the recipients below.";
      break;
  }
  AppendWrapped(&text, intro);
  if (returned != Returned::kNothing) {
    text += kCrlf;
    AppendWrapped(&text, returned == Returned::kFull
                             ? "A copy of the message is attached."
                             : "The header section of the message is attached.");
  }
  if (in.kind == DsnKind::kFailure || in.kind == DsnKind::kDelay) {
    text += kCrlf;
    AppendWrapped(&text, "If you need help, forward this report to your postmaster.");
  }
  for (int index : rcpts) {
    const v1::Recipient& r = in.original->recipients(index);
    const Diagnostic diag = DiagnosticOf(r, utf8_ok);
    const std::string remote = Clean(r.remote_mta(), false);
    std::string line = absl::StrCat("<", Clean(r.address(), utf8_ok), ">: ");
    switch (in.kind) {
      case DsnKind::kFailure:
      case DsnKind::kDelay:
        if (!remote.empty() && diag.type == "smtp") {
          absl::StrAppend(&line, "host ", remote, " said: ", diag.text);
        } else if (!diag.text.empty()) {
          absl::StrAppend(&line, diag.text);
        } else {
          absl::StrAppend(&line, in.kind == DsnKind::kFailure ? "delivery failed"
                                                              : "delivery temporarily deferred");
        }
        break;
      case DsnKind::kRelayed:
      case DsnKind::kDelivered:
        absl::StrAppend(&line, in.kind == DsnKind::kRelayed ? "relayed" : "delivered");
        if (!remote.empty()) absl::StrAppend(&line, " to host ", remote);
        if (!diag.text.empty()) absl::StrAppend(&line, ": ", diag.text);
        break;
    }
    text += kCrlf;  // an empty line before each recipient
    AppendWrapped(&text, line, "    ");
  }
  return text;
}

std::string StatusPart(const DsnInput& in, const std::vector<int>& rcpts, const std::string& mta,
                       bool global) {
  const v1::Envelope& env = *in.original;
  std::string s;
  AppendField(&s, "Reporting-MTA", absl::StrCat("dns; ", mta));
  AppendField(&s, "X-Postern-Queue-ID", Clean(env.queue_id(), false));
  if (!env.dsn_envid().empty()) {
    AppendField(&s, "Original-Envelope-Id", DecodeXtextForReport(env.dsn_envid(), false));
  }
  if (env.has_arrival_time()) {
    AppendField(&s, "Arrival-Date", Rfc5322Date(FromProtoTimestamp(env.arrival_time())));
  }
  const char cls = StatusClassOf(in.kind);
  for (int index : rcpts) {
    const v1::Recipient& r = env.recipients(index);
    s += kCrlf;  // groups are separated by an empty line (RFC 3464 2.1)
    if (const size_t semi = r.orcpt().find(';'); semi != std::string::npos) {
      const std::string type = Clean(std::string_view(r.orcpt()).substr(0, semi), false);
      const std::string addr =
          DecodeXtextForReport(std::string_view(r.orcpt()).substr(semi + 1), global);
      if (!type.empty() && !addr.empty()) {
        AppendField(&s, "Original-Recipient", absl::StrCat(type, "; ", addr));
      }
    }
    const std::string addr = Clean(r.address(), global);
    // RFC 6533 3: an address with UTF-8 has the "utf-8" type.
    AppendField(&s, "Final-Recipient",
                absl::StrCat(IsAscii(addr) ? "rfc822" : "utf-8", "; ", addr));
    AppendField(&s, "Action", ActionOf(in.kind));
    AppendField(&s, "Status", NormalizeStatus(r.status(), cls));
    const std::string remote = Clean(RemoteMtaName(r.remote_mta()), false);
    if (!remote.empty()) AppendField(&s, "Remote-MTA", absl::StrCat("dns; ", remote));
    const Diagnostic diag = DiagnosticOf(r, global);
    if (!diag.type.empty()) {
      AppendField(&s, "Diagnostic-Code", absl::StrCat(diag.type, "; ", diag.text));
    }
    if (r.has_final_time()) {
      AppendField(&s, "Last-Attempt-Date", Rfc5322Date(FromProtoTimestamp(r.final_time())));
    }
    if (in.kind == DsnKind::kDelay && in.will_retry_until.has_value()) {
      AppendField(&s, "Will-Retry-Until", Rfc5322Date(*in.will_retry_until));
    }
  }
  return s;
}

// A boundary (RFC 2046 5.1.1: at most 70 characters) that occurs in none of
// `parts`. "=_" cannot start a line of base64 or quoted-printable text, so
// the first candidate nearly always wins; the search makes it certain.
std::string ChooseBoundary(std::string_view queue_id, const std::vector<Part>& parts) {
  std::string id;
  for (char c : queue_id) {
    if (absl::ascii_isalnum(c) && id.size() < kMaxBoundaryId) id.push_back(c);
  }
  for (uint64_t n = 0;; ++n) {
    std::string candidate = absl::StrCat("=_postern_dsn_", id, "_", n);
    const bool clash = std::any_of(parts.begin(), parts.end(), [&](const Part& p) {
      return p.headers.find(candidate) != std::string::npos ||
             p.content.find(candidate) != std::string::npos;
    });
    if (!clash) return candidate;
  }
}

}  // namespace

std::vector<int> RecipientsToNotify(const v1::Envelope& envelope, DsnKind kind,
                                    const std::vector<int>& candidates) {
  std::vector<int> out;
  if (envelope.sender().empty() || envelope.is_dsn()) return out;
  for (int index : candidates) {
    if (index < 0 || index >= envelope.recipients_size()) continue;
    if (std::find(out.begin(), out.end(), index) != out.end()) continue;
    const v1::Recipient& r = envelope.recipients(index);
    if (!NotifyAllows(r.notify(), kind)) continue;
    if (kind == DsnKind::kDelay && r.delay_notified()) continue;
    out.push_back(index);
  }
  return out;
}

absl::StatusOr<Dsn> BuildDsn(const DsnInput& in) {
  if (in.original == nullptr) return absl::InvalidArgumentError("DSN without an original message");
  if (in.reporting_mta.empty()) return absl::InvalidArgumentError("DSN without reporting MTA");
  if (in.dsn_queue_id.empty()) return absl::InvalidArgumentError("DSN without a queue id");
  const v1::Envelope& env = *in.original;
  for (int index : in.recipients) {
    if (index < 0 || index >= env.recipients_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("DSN recipient index ", index, " out of range for ", env.queue_id()));
    }
  }
  if (env.sender().empty()) return absl::FailedPreconditionError("null sender: no DSN");
  if (env.is_dsn()) return absl::FailedPreconditionError("message is a DSN: no DSN");
  const std::vector<int> rcpts = RecipientsToNotify(env, in.kind, in.recipients);
  if (rcpts.empty()) return absl::FailedPreconditionError("no recipient wants this DSN");

  // UTF-8 may appear where the original already used it (SMTPUTF8); the
  // machine-readable part switches to the global type only when it must.
  const bool utf8_ok = env.smtputf8();
  const std::string sender = Clean(env.sender(), utf8_ok);
  bool global = utf8_ok && !IsAscii(sender);
  for (int index : rcpts) {
    const v1::Recipient& r = env.recipients(index);
    if (utf8_ok && (!IsAscii(r.address()) || !IsAscii(DecodeXtextForReport(r.orcpt(), true)))) {
      global = true;
    }
  }
  const std::string mta = Clean(in.reporting_mta, false);
  const Returned returned = WhatToReturn(in);

  std::vector<Part> parts;
  {
    Part human;
    human.content = HumanPart(in, rcpts, returned, mta, utf8_ok);
    AppendField(
        &human.headers, "Content-Type",
        absl::StrCat("text/plain; charset=", IsAscii(human.content) ? "us-ascii" : "utf-8"));
    AppendField(&human.headers, "Content-Description", "Notification");
    AppendField(&human.headers, "Content-Transfer-Encoding", Encoding(human.content));
    parts.push_back(std::move(human));
  }
  {
    Part status;
    status.content = StatusPart(in, rcpts, mta, global);
    AppendField(&status.headers, "Content-Type",
                global ? "message/global-delivery-status" : "message/delivery-status");
    AppendField(&status.headers, "Content-Description", "Delivery report");
    AppendField(&status.headers, "Content-Transfer-Encoding", Encoding(status.content));
    parts.push_back(std::move(status));
  }
  if (returned != Returned::kNothing) {
    Part original;
    const bool full = returned == Returned::kFull;
    original.content = std::string(full ? in.original_body : HeaderSection(in.original_body));
    const char* type = full ? (env.smtputf8() ? "message/global" : "message/rfc822")
                            : (env.smtputf8() ? "message/global-headers" : "text/rfc822-headers");
    const char* what = in.kind == DsnKind::kFailure ? "Undelivered"
                       : in.kind == DsnKind::kDelay ? "Delayed"
                                                    : "Delivered";
    AppendField(&original.headers, "Content-Type", type);
    AppendField(&original.headers, "Content-Description",
                absl::StrCat(what, full ? " Message" : " Message Headers"));
    AppendField(&original.headers, "Content-Transfer-Encoding", Encoding(original.content));
    parts.push_back(std::move(original));
  }

  const std::string boundary = ChooseBoundary(in.dsn_queue_id, parts);
  bool ascii = IsAscii(sender);
  for (const Part& p : parts) ascii = ascii && IsAscii(p.content);

  Dsn dsn;
  std::string& body = dsn.body;
  AppendField(&body, "From", absl::StrCat("Mail Delivery System <MAILER-DAEMON@", mta, ">"));
  AppendField(&body, "To", absl::StrCat("<", sender, ">"));
  AppendField(&body, "Subject", SubjectOf(in.kind));
  AppendField(&body, "Date", Rfc5322Date(in.now));
  AppendField(&body, "Message-ID", absl::StrCat("<", Clean(in.dsn_queue_id, false), "@", mta, ">"));
  AppendField(&body, "Auto-Submitted", "auto-replied");  // RFC 3834 5
  AppendField(&body, "MIME-Version", "1.0");
  AppendField(&body, "Content-Type",
              absl::StrCat("multipart/report; report-type=",
                           global ? "global-delivery-status" : "delivery-status", "; boundary=\"",
                           boundary, "\""));
  AppendField(&body, "Content-Transfer-Encoding", ascii ? "7bit" : "8bit");
  const bool header_ascii = IsAscii(body);
  absl::StrAppend(&body, kCrlf, "This is a MIME-encapsulated message.", kCrlf);
  for (const Part& p : parts) {
    absl::StrAppend(&body, kCrlf, "--", boundary, kCrlf, p.headers, kCrlf, p.content);
  }
  absl::StrAppend(&body, kCrlf, "--", boundary, "--", kCrlf);

  v1::Envelope& out = dsn.envelope;
  out.set_queue_id(in.dsn_queue_id);
  out.set_sender("");  // the null sender: a notice is never answered
  v1::Recipient* to = out.add_recipients();
  to->set_address(env.sender());
  to->set_state(v1::RECIPIENT_STATE_PENDING);
  *out.mutable_arrival_time() = ToProtoTimestamp(in.now);
  out.set_shard(env.shard());
  // SMTPUTF8 only when the notice's own header or envelope needs it; UTF-8
  // inside message/global* parts travels as 8-bit MIME (RFC 6532 3.7).
  out.set_smtputf8(utf8_ok && (!header_ascii || !IsAscii(env.sender())));
  out.set_eight_bit_mime(!IsAscii(body));
  out.set_is_dsn(true);
  out.set_body_size(body.size());
  return dsn;
}

}  // namespace postern::queue
