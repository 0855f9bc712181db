// SMTP reply parsing for the client side (RFC 5321 4.2, RFC 2034/3463
// enhanced status codes). Pure: bytes in, replies out. No I/O, no clock.
//
// A reply is one or more lines "NNN-text" ending with "NNN text" (or a bare
// "NNN"), each terminated by CRLF. The parser holds what it has been given
// and returns replies one at a time, so pipelined replies that arrive in one
// read are answered in order, and a reply cut anywhere is reassembled.
//
// Hostile servers: a line longer than ReplyLimits::max_line_length or a reply
// with more than max_lines lines is an error, so the parser never holds more
// than max_lines * max_line_length octets of one reply plus what the caller
// gave it in one Receive(). Malformed input (no three-digit code, a code
// outside 2xx..5xx, a bad separator, continuation lines that change the code,
// a bare CR or LF) is an error too. Errors are sticky: once the stream is out
// of step nothing after it can be trusted.
//
// Reply text is peer data: control octets other than TAB are replaced with
// '?' so it can be logged; 8-bit octets are kept as sent.
//
// Threading: a parser belongs to one connection; no shared state.
#ifndef POSTERN_ENGINE_SMTP_SMTP_REPLY_H_
#define POSTERN_ENGINE_SMTP_SMTP_REPLY_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace postern::engine {

struct ReplyLimits {
  // Octets per line, CRLF included. RFC 5321 4.5.3.1.5 says 512, but real
  // servers send longer text; this is a memory bound, not a syntax rule.
  size_t max_line_length = 2048;
  size_t max_lines = 100;  // lines per reply (an EHLO reply has one per keyword)
};

struct SmtpReply {
  int code = 0;  // 200..599
  // RFC 3463 "class.subject.detail" from the start of the first line, ""
  // where the server sent none. Only taken when its class matches the reply
  // code's first digit (2, 4 or 5).
  std::string enhanced_code;
  // The text of each line after "NNN-" / "NNN ", without the enhanced code
  // where a line starts with the same one; "" for a bare "NNN". Sanitised
  // as described above.
  std::vector<std::string> lines;

  int reply_class() const { return code / 100; }
  bool positive() const { return reply_class() == 2; }
  bool transient() const { return reply_class() == 4; }
  bool permanent() const { return reply_class() == 5; }

  // enhanced_code, else the class default "2.0.0", "4.0.0" or "5.0.0" ("" for
  // a 3xx reply, which has no enhanced class).
  std::string EnhancedOrDefault() const;
  // The lines joined with single spaces.
  std::string Text() const;
  // One line for logs and DSN diagnostics: "550 5.1.1 text" (the enhanced
  // code only where the server sent one).
  std::string ToString() const;
};

// Incremental reply parser. Owner: the client session (or a test); one
// thread.
class SmtpReplyParser {
 public:
  enum class Result {
    kNeedMore,  // no complete reply buffered
    kReply,     // *reply holds the next reply; its octets are consumed
    kError,     // malformed input; error() says why (sticky)
  };

  explicit SmtpReplyParser(ReplyLimits limits = {});

  // Appends bytes read from the server. Ignored after an error.
  void Receive(std::string_view bytes);

  // Parses the next complete reply. Lines of a reply still arriving are kept
  // (and checked) until its last line comes.
  Result Next(SmtpReply* reply);

  // OK until an error; then why, the same whatever way the input was cut.
  const absl::Status& error() const { return error_; }

  // Octets received and not yet returned as part of a reply.
  size_t buffered_bytes() const;

  // Drops everything buffered, a partly received reply included, and
  // returns how many octets that was. For STARTTLS: what the server sent
  // after its 220 in plaintext must never be read as if it came inside TLS.
  size_t Discard();

 private:
  void Fail(std::string_view why);
  // Parses one complete line (CRLF included) into pending_; true when it was
  // the reply's last line.
  bool ParseLine(std::string_view line);

  ReplyLimits limits_;
  absl::Status error_;
  std::string buffer_;
  size_t pos_ = 0;   // start of the first unparsed line in buffer_
  size_t scan_ = 0;  // where the search for the next LF resumes
  SmtpReply pending_;
  size_t pending_octets_ = 0;  // raw octets of the lines in pending_
};

// Parses `text` as exactly one complete reply (tests, tools). Trailing
// octets after the reply, or an incomplete reply, are errors.
absl::StatusOr<SmtpReply> ParseSmtpReply(std::string_view text, ReplyLimits limits = {});

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_SMTP_SMTP_REPLY_H_
