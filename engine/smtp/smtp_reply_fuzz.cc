// libFuzzer target for SmtpReplyParser. The first input byte picks small
// limits and a way to cut the rest into reads; the rest is what a server
// sends. The parser must never crash, must return the same replies and the
// same error however the input is cut, must keep within its limits, and
// every reply must be well formed (code 200..599, enhanced code of the
// reply's class, no control octets in the text).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/smtp/smtp_reply.h"

namespace {

using postern::engine::ParseSmtpReply;
using postern::engine::ReplyLimits;
using postern::engine::SmtpReply;
using postern::engine::SmtpReplyParser;
using Result = SmtpReplyParser::Result;

// Not assert(): fuzz builds may define NDEBUG.
void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

void CheckReply(const SmtpReply& r, const ReplyLimits& limits) {
  Check(r.code >= 200 && r.code <= 599, "code in 2xx..5xx");
  Check(!r.lines.empty() && r.lines.size() <= limits.max_lines, "line count within limits");
  for (const std::string& line : r.lines) {
    Check(line.size() + 6 <= limits.max_line_length, "line length within limits");
    for (char c : line) {
      const unsigned char u = static_cast<unsigned char>(c);
      Check(u >= 0x20 || u == '\t', "no control octets in text");
      Check(u != 0x7f, "no DEL in text");
    }
  }
  const std::string& e = r.enhanced_code;
  if (!e.empty()) {
    Check(e[0] == '0' + r.reply_class(), "enhanced code has the reply's class");
    Check(e.size() >= 5 && e[1] == '.', "enhanced code shape");
    size_t dots = 0;
    for (size_t i = 1; i < e.size(); ++i) {
      Check(IsDigit(e[i]) || e[i] == '.', "enhanced code digits");
      dots += e[i] == '.';
    }
    Check(dots == 2, "enhanced code has three parts");
  }
  const std::string enhanced = r.EnhancedOrDefault();
  Check(r.reply_class() == 3 ? enhanced.empty() : enhanced[0] == '0' + r.reply_class(),
        "default enhanced code matches the class");
  const std::string s = r.ToString();
  Check(s.find('\r') == std::string::npos && s.find('\n') == std::string::npos,
        "ToString is one line");
}

struct Run {
  std::vector<std::string> replies;  // flattened
  std::string error;
  size_t left = 0;
};

Run Parse(std::string_view input, const ReplyLimits& limits, const std::vector<size_t>& cuts) {
  SmtpReplyParser parser(limits);
  Run run;
  size_t pos = 0;
  size_t next = 0;
  size_t largest_read = 0;
  while (pos < input.size()) {
    const size_t n = cuts.empty() ? input.size() : cuts[next++ % cuts.size()];
    const size_t fed = std::min(n, input.size() - pos);
    largest_read = std::max(largest_read, fed);
    parser.Receive(input.substr(pos, fed));
    pos += fed;
    SmtpReply reply;
    for (;;) {
      const Result r = parser.Next(&reply);
      if (r == Result::kReply) {
        CheckReply(reply, limits);
        std::string flat = absl::StrCat(reply.code, "|", reply.enhanced_code);
        for (const std::string& line : reply.lines) absl::StrAppend(&flat, "|", line);
        run.replies.push_back(flat);
        continue;
      }
      if (r == Result::kError) {
        Check(!parser.error().ok(), "an error has a reason");
        Check(parser.buffered_bytes() == 0, "nothing is kept after an error");
      } else {
        // A partial line and the finished lines of one reply, no more.
        Check(parser.buffered_bytes() <
                  limits.max_line_length * (limits.max_lines + 1) + largest_read,
              "buffering is bounded");
      }
      break;
    }
  }
  run.error = std::string(parser.error().message());
  run.left = parser.buffered_bytes();
  return run;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t seed = data[0];
  const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  ReplyLimits limits;
  if (seed & 1) {
    limits.max_line_length = 16 + (seed >> 4);
    limits.max_lines = 1 + ((seed >> 1) & 7);
  }
  std::vector<size_t> cuts;
  uint32_t state = seed * 2654435761u + 1;
  for (int i = 0; i < 16; ++i) {
    state = state * 1664525u + 1013904223u;
    cuts.push_back(1 + (state >> 16) % 9);
  }
  const Run whole = Parse(input, limits, {});
  const Run bytewise = Parse(input, limits, {1});
  const Run chunked = Parse(input, limits, cuts);
  Check(whole.replies == bytewise.replies && whole.replies == chunked.replies,
        "replies do not depend on how input is cut");
  Check(whole.error == bytewise.error && whole.error == chunked.error,
        "errors do not depend on how input is cut");
  Check(whole.left == bytewise.left && whole.left == chunked.left,
        "leftover does not depend on how input is cut");

  // The one-shot parser agrees with the stream parser on a single reply.
  const auto one = ParseSmtpReply(input, limits);
  if (one.ok()) {
    Check(whole.replies.size() == 1 && whole.error.empty() && whole.left == 0,
          "ParseSmtpReply accepts exactly one complete reply");
  }
  return 0;
}
