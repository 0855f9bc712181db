#include "engine/smtp/data_reader.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace postern::engine {

DataReader::DataReader(size_t max_message_size, size_t max_text_line)
    : max_message_size_(max_message_size),
      max_line_text_(max_text_line >= 2 ? max_text_line - 2 : 0) {}

void DataReader::Fail(Result result) {
  if (result_ == Result::kOk) result_ = result;
}

void DataReader::AddText(std::string_view text, std::string* content) {
  if (result_ == Result::kOk) {
    // Both limits are checked by byte position, not per run: a run is cut
    // wherever the input happened to be chunked, and the reported error must
    // not depend on that. While no error is set, neither limit is exceeded.
    const uint64_t line_room = max_line_text_ - line_length_;
    const uint64_t size_room = max_message_size_ - size_;
    if (text.size() > line_room || text.size() > size_room) {
      Fail(line_room <= size_room ? Result::kLineTooLong : Result::kTooLarge);
    } else {
      content->append(text);
    }
  }
  size_ += text.size();
  line_length_ += text.size();
}

void DataReader::AddLineEnd(std::string* content) {
  size_ += 2;
  line_length_ = 0;
  if (size_ > max_message_size_) Fail(Result::kTooLarge);
  if (result_ == Result::kOk) content->append("\r\n");
}

size_t DataReader::Feed(std::string_view input, std::string* content) {
  size_t i = 0;
  const size_t n = input.size();
  // States other than kText look at one byte and may hand it on to kText
  // without consuming it ("continue" without ++i).
  while (i < n && state_ != State::kDone) {
    const char c = input[i];
    switch (state_) {
      case State::kText: {
        // Bulk path: copy the run up to the next CR or LF in one append.
        size_t j = i;
        while (j < n && input[j] != '\r' && input[j] != '\n') ++j;
        if (j > i) {
          AddText(input.substr(i, j - i), content);
          i = j;
          continue;
        }
        if (c == '\r') {
          state_ = State::kCr;
        } else {
          // Bare LF. Treated as the end of a line only for the length count;
          // it never starts a line that could end the data.
          Fail(Result::kBareNewline);
          line_length_ = 0;
        }
        ++i;
        continue;
      }
      case State::kLineStart:
        if (c == '.') {
          state_ = State::kDot;
          ++i;
        } else {
          state_ = State::kText;
        }
        continue;
      case State::kDot:
        if (c == '\r') {
          state_ = State::kDotCr;
          ++i;
        } else {
          // Transparency (4.5.2): drop the leading dot, keep the rest.
          state_ = State::kText;
        }
        continue;
      case State::kDotCr:
        if (c == '\n') {
          state_ = State::kDone;
          ++i;
        } else {
          Fail(Result::kBareNewline);  // ".<CR>" then not LF
          state_ = State::kText;
        }
        continue;
      case State::kCr:
        if (c == '\n') {
          AddLineEnd(content);
          state_ = State::kLineStart;
          ++i;
        } else {
          Fail(Result::kBareNewline);  // the previous CR was bare
          state_ = State::kText;
        }
        continue;
      case State::kDone:
        break;
    }
  }
  return i;
}

}  // namespace postern::engine
