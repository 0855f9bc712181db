#include "common/proto_time.h"

#include <algorithm>
#include <cstdint>

#include "google/protobuf/util/time_util.h"

namespace postern {

// Not TimeUtil::TimestampToNanoseconds / NanosecondsToTimestamp: int64
// nanoseconds reach only 1677-2262, a Timestamp 0001-9999, and a retry step
// may be configured up to 10000 years. Past 2262 the first overflows
// (undefined behaviour, on a value a damaged spool record can hold) and the
// second would move far deadlines. absl::Time covers the whole range.

absl::Time FromProtoTimestamp(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

google::protobuf::Timestamp ToProtoTimestamp(absl::Time t) {
  using google::protobuf::util::TimeUtil;
  static const absl::Time kMin = absl::FromUnixSeconds(TimeUtil::kTimestampMinSeconds);
  static const absl::Time kMax =
      absl::FromUnixSeconds(TimeUtil::kTimestampMaxSeconds) + absl::Nanoseconds(999'999'999);
  t = std::clamp(t, kMin, kMax);
  // ToUnixSeconds rounds toward the past, so nanos is in [0, 1e9).
  const int64_t seconds = absl::ToUnixSeconds(t);
  google::protobuf::Timestamp out;
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(seconds))));
  return out;
}

}  // namespace postern
