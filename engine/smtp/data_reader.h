// DataReader: incremental scanner for SMTP DATA content (RFC 5321 4.1.1.4,
// 4.5.2). Feed it the bytes that follow the 354 reply in chunks of any size;
// it removes dot-stuffing, appends the content to a caller's string and stops
// right after the end-of-data sequence, reporting how many input bytes it
// consumed so pipelined commands after the end stay with the caller.
//
// End of data is recognised ONLY as <CRLF>.<CRLF>, where the start of the
// content counts as following a CRLF (so ".\r\n" alone is an empty message).
// Variants such as <LF>.<LF>, <CRLF>.<LF>, <LF>.<CRLF> or <CR>.<CR> are not an
// end: that disagreement between MTAs is what SMTP smuggling exploits.
//
// Errors (the first one wins and is reported by result() once done()):
//  - kBareNewline: a CR not followed by LF, or an LF not preceded by CR,
//    anywhere in the content. Reading continues to the real <CRLF>.<CRLF>, so
//    whatever a smuggler hid after a fake end is swallowed as content of the
//    rejected message and never runs as commands. A client that really ends
//    its data with a bare-LF sequence never sends <CRLF>.<CRLF>; it waits for
//    a reply until the session's idle timeout closes the connection (421).
//  - kLineTooLong: a text line longer than max_text_line octets including its
//    CRLF, not counting a leading dot added for transparency (4.5.3.1.6).
//  - kTooLarge: more than max_message_size octets of (unstuffed) content.
// After an error nothing more is appended; what was appended before is
// incomplete and must be discarded.
//
// Content is appended exactly as it will be stored: dot-unstuffed, CRLF line
// endings, without the final ".CRLF".
//
// Not thread-safe; one reader per DATA transaction, on the session's thread.
#ifndef POSTERN_ENGINE_SMTP_DATA_READER_H_
#define POSTERN_ENGINE_SMTP_DATA_READER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace postern::engine {

class DataReader {
 public:
  enum class Result {
    kOk,
    kBareNewline,
    kLineTooLong,
    kTooLarge,
  };

  DataReader(size_t max_message_size, size_t max_text_line);

  // Scans `input`, appending content to *content (unless an error was seen).
  // Returns the number of bytes consumed: all of `input` unless the end of
  // data was found, in which case the bytes after it are left unconsumed.
  // Once done(), consumes nothing.
  size_t Feed(std::string_view input, std::string* content);

  // True once <CRLF>.<CRLF> has been consumed.
  bool done() const { return state_ == State::kDone; }
  // Meaningful once done(); may already be set before.
  Result result() const { return result_; }
  // Content octets seen so far, including any past the size limit.
  uint64_t size() const { return size_; }

 private:
  enum class State {
    kLineStart,  // after CRLF (or at the start)
    kDot,        // "." at line start
    kDotCr,      // ".<CR>" at line start
    kText,       // inside a line
    kCr,         // CR inside a line: needs LF
    kDone,
  };

  void Fail(Result result);
  void AddText(std::string_view text, std::string* content);
  void AddLineEnd(std::string* content);

  const uint64_t max_message_size_;
  const uint64_t max_line_text_;  // octets before the CRLF
  State state_ = State::kLineStart;
  Result result_ = Result::kOk;
  uint64_t size_ = 0;
  uint64_t line_length_ = 0;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_SMTP_DATA_READER_H_
