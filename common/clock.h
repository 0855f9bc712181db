// Time helpers both processes use: a monotonic millisecond clock for
// timeouts and deadlines (never the wall clock, which can step), and
// config durations in milliseconds.
#ifndef POSTERN_COMMON_CLOCK_H_
#define POSTERN_COMMON_CLOCK_H_

#include <time.h>

#include <cstdint>

#include "google/protobuf/duration.pb.h"

namespace postern {

inline int64_t MonotonicMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

inline int64_t DurationMs(const google::protobuf::Duration& d) {
  return d.seconds() * 1000 + d.nanos() / 1000000;
}

}  // namespace postern

#endif  // POSTERN_COMMON_CLOCK_H_
