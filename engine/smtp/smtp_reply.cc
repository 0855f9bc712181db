#include "engine/smtp/smtp_reply.h"

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace postern::engine {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// RFC 3463 2: class "." subject "." detail, subject and detail 1*3digit. The
// class must be the reply's (RFC 2034 4). Returns its length, or 0.
size_t EnhancedCodeLength(std::string_view text, char reply_class) {
  if (reply_class != '2' && reply_class != '4' && reply_class != '5') return 0;
  if (text.size() < 5 || text[0] != reply_class || text[1] != '.') return 0;
  size_t i = 2;
  for (int part = 0; part < 2; ++part) {
    const size_t start = i;
    while (i < text.size() && IsDigit(text[i]) && i - start < 4) ++i;
    if (i == start || i - start > 3) return 0;
    if (part == 0) {
      if (i >= text.size() || text[i] != '.') return 0;
      ++i;
    }
  }
  if (i < text.size() && text[i] != ' ') return 0;
  return i;
}

// Text is logged and may end up in a DSN: control octets other than TAB are
// replaced, so a reply cannot forge log lines or terminal escapes.
std::string Sanitize(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    const unsigned char u = static_cast<unsigned char>(c);
    if ((u < 0x20 && u != '\t') || u == 0x7f) c = '?';
  }
  return out;
}

}  // namespace

std::string SmtpReply::EnhancedOrDefault() const {
  if (!enhanced_code.empty()) return enhanced_code;
  switch (reply_class()) {
    case 2:
      return "2.0.0";
    case 4:
      return "4.0.0";
    case 5:
      return "5.0.0";
    default:
      return "";
  }
}

std::string SmtpReply::Text() const {
  std::string text;
  for (const std::string& line : lines) {
    if (line.empty()) continue;
    if (!text.empty()) text += ' ';
    text += line;
  }
  return text;
}

std::string SmtpReply::ToString() const {
  std::string s = absl::StrCat(code);
  if (!enhanced_code.empty()) absl::StrAppend(&s, " ", enhanced_code);
  const std::string text = Text();
  if (!text.empty()) absl::StrAppend(&s, " ", text);
  return s;
}

SmtpReplyParser::SmtpReplyParser(ReplyLimits limits) : limits_(limits) {}

void SmtpReplyParser::Receive(std::string_view bytes) {
  if (!error_.ok()) return;
  buffer_.append(bytes);
}

size_t SmtpReplyParser::buffered_bytes() const { return buffer_.size() - pos_ + pending_octets_; }

size_t SmtpReplyParser::Discard() {
  const size_t n = buffered_bytes();
  buffer_.clear();
  pos_ = scan_ = 0;
  pending_ = SmtpReply();
  pending_octets_ = 0;
  return n;
}

void SmtpReplyParser::Fail(std::string_view why) {
  error_ = absl::InvalidArgumentError(std::string(why));
  buffer_.clear();
  pos_ = scan_ = 0;
  pending_ = SmtpReply();
  pending_octets_ = 0;
}

SmtpReplyParser::Result SmtpReplyParser::Next(SmtpReply* reply) {
  if (!error_.ok()) return Result::kError;
  for (;;) {
    const size_t lf = buffer_.find('\n', scan_);
    if (lf == std::string::npos) {
      scan_ = buffer_.size();
      // Even the LF still to come would make the line too long.
      if (buffer_.size() - pos_ >= limits_.max_line_length) {
        Fail("reply line too long");
        return Result::kError;
      }
      // Keep the buffer from growing with consumed lines.
      if (pos_ > 0) {
        buffer_.erase(0, pos_);
        scan_ -= pos_;
        pos_ = 0;
      }
      return Result::kNeedMore;
    }
    const std::string_view line(buffer_.data() + pos_, lf + 1 - pos_);
    pos_ = scan_ = lf + 1;
    const bool last = ParseLine(line);
    if (!error_.ok()) return Result::kError;
    if (last) {
      *reply = std::move(pending_);
      pending_ = SmtpReply();
      pending_octets_ = 0;
      if (pos_ == buffer_.size()) {
        buffer_.clear();
        pos_ = scan_ = 0;
      }
      return Result::kReply;
    }
  }
}

bool SmtpReplyParser::ParseLine(std::string_view line) {
  if (line.size() > limits_.max_line_length) {
    Fail("reply line too long");
    return false;
  }
  if (line.size() < 2 || line[line.size() - 2] != '\r') {
    Fail("reply line not terminated by CRLF");
    return false;
  }
  const std::string_view content = line.substr(0, line.size() - 2);
  if (content.find('\r') != std::string_view::npos) {
    Fail("bare CR in reply line");
    return false;
  }
  if (content.size() < 3 || !IsDigit(content[0]) || !IsDigit(content[1]) || !IsDigit(content[2])) {
    Fail("reply line does not start with a three-digit code");
    return false;
  }
  if (content[0] < '2' || content[0] > '5') {
    Fail("reply code outside 2xx..5xx");
    return false;
  }
  bool last = true;
  std::string_view text;
  if (content.size() > 3) {
    if (content[3] != ' ' && content[3] != '-') {
      Fail("reply code not followed by space or hyphen");
      return false;
    }
    last = content[3] == ' ';
    text = content.substr(4);
  }
  const int code = (content[0] - '0') * 100 + (content[1] - '0') * 10 + (content[2] - '0');
  if (pending_.lines.empty()) {
    pending_.code = code;
    const size_t n = EnhancedCodeLength(text, content[0]);
    if (n > 0) {
      pending_.enhanced_code = std::string(text.substr(0, n));
      text.remove_prefix(n);
      if (!text.empty()) text.remove_prefix(1);
    }
  } else {
    if (code != pending_.code) {
      Fail("reply lines with different codes");
      return false;
    }
    // RFC 2034 4: the enhanced code starts every line; keep it once.
    const std::string& enhanced = pending_.enhanced_code;
    if (!enhanced.empty() && text.substr(0, enhanced.size()) == enhanced &&
        (text.size() == enhanced.size() || text[enhanced.size()] == ' ')) {
      text.remove_prefix(std::min(text.size(), enhanced.size() + 1));
    }
  }
  if (pending_.lines.size() >= limits_.max_lines) {
    Fail("too many lines in one reply");
    return false;
  }
  pending_.lines.push_back(Sanitize(text));
  pending_octets_ += line.size();
  return last;
}

absl::StatusOr<SmtpReply> ParseSmtpReply(std::string_view text, ReplyLimits limits) {
  SmtpReplyParser parser(limits);
  parser.Receive(text);
  SmtpReply reply;
  switch (parser.Next(&reply)) {
    case SmtpReplyParser::Result::kError:
      return parser.error();
    case SmtpReplyParser::Result::kNeedMore:
      return absl::InvalidArgumentError("incomplete reply");
    case SmtpReplyParser::Result::kReply:
      break;
  }
  if (parser.buffered_bytes() != 0) return absl::InvalidArgumentError("octets after the reply");
  return reply;
}

}  // namespace postern::engine
