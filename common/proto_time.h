// google.protobuf.Timestamp <-> absl::Time, for the queue's envelopes and
// the tools that print them.
#ifndef POSTERN_COMMON_PROTO_TIME_H_
#define POSTERN_COMMON_PROTO_TIME_H_

#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"

namespace postern {

// The instant `t` names, exactly, over a Timestamp's whole range (years
// 0001-9999, and past it too). An unset Timestamp is the Unix epoch.
absl::Time FromProtoTimestamp(const google::protobuf::Timestamp& t);

// `t` to the nanosecond, normalized: nanos in [0, 1e9), also before the
// epoch. Instants outside a Timestamp's range (TimeUtil::kTimestampMinSeconds
// .. kTimestampMaxSeconds, years 0001-9999), the infinite ones among them,
// are clamped to its first or last nanosecond.
google::protobuf::Timestamp ToProtoTimestamp(absl::Time t);

}  // namespace postern

#endif  // POSTERN_COMMON_PROTO_TIME_H_
