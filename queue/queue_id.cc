#include "queue/queue_id.h"

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

namespace postern::queue {
namespace {

constexpr char kHexDigits[] = "0123456789ABCDEF";
constexpr int64_t kMaxMicros = (int64_t{1} << (4 * QueueIdGenerator::kTimeDigits)) - 1;

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void AppendHex(uint64_t value, size_t digits, std::string* out) {
  for (size_t i = digits; i > 0; --i) {
    out->push_back(kHexDigits[(value >> (4 * (i - 1))) & 0xF]);
  }
}

}  // namespace

int64_t QueueIdGenerator::SystemClockMicros() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

QueueIdGenerator::QueueIdGenerator(uint32_t shard, Clock clock)
    : shard_(shard), clock_(std::move(clock)) {
  if (shard_ > kMaxShard) {
    std::fprintf(stderr, "QueueIdGenerator: shard %u exceeds %u\n", shard_, kMaxShard);
    std::abort();
  }
}

std::string QueueIdGenerator::Next() {
  // A clock before 1970 or beyond the 14 digits is clamped, never wrapped:
  // wrapping would break the ordering that uniqueness rests on.
  const int64_t now = std::clamp<int64_t>(clock_(), 0, kMaxMicros);
  last_micros_ = std::max(now, last_micros_ + 1);
  std::string id;
  id.reserve(kLength);
  AppendHex(static_cast<uint64_t>(last_micros_), kTimeDigits, &id);
  AppendHex(shard_, kShardDigits, &id);
  return id;
}

void QueueIdGenerator::AdvancePast(std::string_view id) {
  int64_t micros = 0;
  uint32_t shard = 0;
  if (!Parse(id, &micros, &shard)) return;
  // Same microsecond with a larger shard suffix still sorts before last+1.
  last_micros_ = std::max(last_micros_, micros);
}

bool QueueIdGenerator::IsValid(std::string_view id) {
  if (id.size() != kLength) return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return HexValue(c) >= 0; });
}

bool QueueIdGenerator::Parse(std::string_view id, int64_t* micros, uint32_t* shard) {
  if (!IsValid(id)) return false;
  uint64_t t = 0;
  for (size_t i = 0; i < kTimeDigits; ++i) t = (t << 4) | static_cast<uint64_t>(HexValue(id[i]));
  uint32_t s = 0;
  for (size_t i = kTimeDigits; i < kLength; ++i) {
    s = (s << 4) | static_cast<uint32_t>(HexValue(id[i]));
  }
  *micros = static_cast<int64_t>(t);
  *shard = s;
  return true;
}

}  // namespace postern::queue
