#include "common/log.h"

#include <unistd.h>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace postern::log {
namespace {

std::string& ProcessFields() {
  static std::string* fields = new std::string();
  return *fields;
}

// Values with spaces, quotes, '=' or control characters are quoted; control
// characters are escaped so a hostile HELO cannot forge log lines.
void AppendValue(std::string_view v, std::string* out) {
  bool quote = v.empty();
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      quote = true;
      break;
    }
  }
  if (!quote) {
    out->append(v);
    return;
  }
  out->push_back('"');
  for (char c : v) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (u < 0x20 || u == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out->append("\\x");
      out->push_back(kHex[u >> 4]);
      out->push_back(kHex[u & 15]);
    } else {
      out->push_back(c);
    }
  }
  out->push_back('"');
}

}  // namespace

void SetProcessFields(std::string_view fields) { ProcessFields() = std::string(fields); }

LogEvent::LogEvent(std::string_view event, Level level) {
  std::string_view lv = level == Level::kInfo ? "info" : level == Level::kWarn ? "warn" : "error";
  line_ = "ts=" + absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  line_ += " level=";
  line_ += lv;
  if (!ProcessFields().empty()) line_ += " " + ProcessFields();
  line_ += " event=";
  AppendValue(event, &line_);
}

LogEvent& LogEvent::Add(std::string_view key, std::string_view value) {
  line_ += ' ';
  line_ += key;
  line_ += '=';
  AppendValue(value, &line_);
  return *this;
}

LogEvent& LogEvent::Add(std::string_view key, int64_t value) {
  line_ += ' ';
  line_ += key;
  line_ += '=';
  line_ += std::to_string(value);
  return *this;
}

void LogEvent::Emit() {
  line_.push_back('\n');
  size_t off = 0;
  while (off < line_.size()) {
    ssize_t w = write(STDERR_FILENO, line_.data() + off, line_.size() - off);
    if (w <= 0) return;  // nowhere to report a failing stderr
    off += static_cast<size_t>(w);
  }
}

}  // namespace postern::log
