// QueueIdGenerator: the names of spooled messages ("queued as <id>").
//
// Format (queue/FORMAT.md): 16 characters [0-9A-F]:
//   TTTTTTTTTTTTTTSS
//   T: 14 hex digits, microseconds since the Unix epoch (lasts until year 4253)
//   S: 2 hex digits, the shard that accepted the message (0..255)
// e.g. "0005F3A1B2C3D403". Fixed length, so byte order is numeric order: a
// shard's ids sort by arrival, and RocksDB iterates its spool oldest first.
//
// Why ids are unique:
// - Within a generator: Next() returns max(now_us, last_us + 1), so the time
//   part strictly increases even when two messages arrive in the same
//   microsecond or the wall clock steps back while running (ids then run
//   ahead of the clock by one microsecond per id until it catches up).
// - Across shards of a node: the shard suffix differs.
// - Across restarts: a restart takes far longer than a microsecond, so the
//   clock has moved past every id issued before. That fails only if the wall
//   clock stepped back across the restart (NTP step, bad RTC). Mitigation, with
//   nothing extra persisted: at start-up the worker calls
//   AdvancePast(store.LastId()), so new ids sort after every id still in the
//   spool. Ids of messages already delivered and deleted may then be issued
//   again; that can only confuse log searches, never the spool, because no
//   record with that key exists any more.
// Ids are unique per node, not per cluster (like Postfix queue ids).
//
// Threading: not thread-safe; one generator per shard, used by its event loop
// thread.
#ifndef POSTERN_QUEUE_QUEUE_ID_H_
#define POSTERN_QUEUE_QUEUE_ID_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace postern::queue {

class QueueIdGenerator {
 public:
  // Microseconds since the Unix epoch. Injected so tests are deterministic.
  using Clock = std::function<int64_t()>;

  static constexpr size_t kTimeDigits = 14;
  static constexpr size_t kShardDigits = 2;
  static constexpr size_t kLength = kTimeDigits + kShardDigits;
  static constexpr uint32_t kMaxShard = 0xFF;

  // The system wall clock (CLOCK_REALTIME), in microseconds.
  static int64_t SystemClockMicros();

  // `shard` must be <= kMaxShard: a larger value is a configuration bug the
  // caller must reject earlier, so it aborts the process.
  explicit QueueIdGenerator(uint32_t shard, Clock clock = SystemClockMicros);

  // A new id, greater than every id this generator returned or was advanced
  // past.
  std::string Next();

  // Makes every later Next() sort after `id` (any shard's). Ids that are not
  // well formed (IsValid) are ignored.
  void AdvancePast(std::string_view id);

  // True when `id` has the format above (length and upper-case hex digits).
  static bool IsValid(std::string_view id);

  // The time and shard parts of a valid id; false when `id` is not valid.
  static bool Parse(std::string_view id, int64_t* micros, uint32_t* shard);

  uint32_t shard() const { return shard_; }

 private:
  uint32_t shard_;
  Clock clock_;
  int64_t last_micros_ = -1;  // time part of the last id issued or advanced past
};

}  // namespace postern::queue

#endif  // POSTERN_QUEUE_QUEUE_ID_H_
