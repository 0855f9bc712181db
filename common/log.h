// Structured logging: one line per event, logfmt (key=value), written with a
// single write(2) so lines from several processes sharing stderr never
// interleave. Example:
//   LogEvent("queued").Add("queue_id", id).Add("from", sender).Emit();
//   ts=2026-11-23T08:40:58.123Z level=info proc=worker shard=0 event=queued queue_id=... from=...
#ifndef POSTERN_COMMON_LOG_H_
#define POSTERN_COMMON_LOG_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace postern::log {

// Set once at process start: fields every line of this process carries.
void SetProcessFields(std::string_view fields);  // e.g. "proc=worker shard=0"

enum class Level { kInfo, kWarn, kError };

class LogEvent {
 public:
  explicit LogEvent(std::string_view event, Level level = Level::kInfo);
  LogEvent& Add(std::string_view key, std::string_view value);
  LogEvent& Add(std::string_view key, int64_t value);
  void Emit();

 private:
  std::string line_;
};

}  // namespace postern::log

#endif  // POSTERN_COMMON_LOG_H_
