#include "bench/loadgen_stats.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace postern::bench {
namespace {

// 2^kSubBits exact buckets at the bottom; above them each power of two is
// split into kHalf buckets.
constexpr int kSubBits = 8;
constexpr uint64_t kSub = uint64_t{1} << kSubBits;  // 256
constexpr uint64_t kHalf = kSub / 2;                // 128
constexpr size_t kBucketCount = kSub + (64 - kSubBits) * kHalf;

double Ms(uint64_t micros) { return static_cast<double>(micros) / 1000.0; }

double PerSecond(uint64_t n, double seconds) {
  return seconds > 0 ? static_cast<double>(n) / seconds : 0.0;
}

std::string Fixed(double v, int decimals) { return absl::StrFormat("%.*f", decimals, v); }

struct Phase {
  const char* name;
  const LatencyHistogram* histogram;
};

std::vector<Phase> Phases(const LoadgenTotals& t) {
  return {{"connect", &t.connect},
          {"tls_handshake", &t.tls_handshake},
          {"mail_to_data", &t.mail_to_data},
          {"data_end_to_250", &t.data_end_to_250},
          {"message", &t.message}};
}

template <typename Key>
std::string JsonCounts(const std::map<Key, uint64_t>& m) {
  std::string out = "{";
  bool first = true;
  for (const auto& [key, n] : m) {
    absl::StrAppend(&out, first ? "" : ",", "\"", key, "\":", n);
    first = false;
  }
  out.push_back('}');
  return out;
}

template <typename Key>
std::string TextCounts(const std::map<Key, uint64_t>& m) {
  std::string out;
  for (const auto& [key, n] : m) absl::StrAppend(&out, out.empty() ? "" : ", ", key, ": ", n);
  return out.empty() ? "none" : out;
}

}  // namespace

LatencyHistogram::LatencyHistogram() : buckets_(kBucketCount, 0) {}

size_t LatencyHistogram::BucketIndex(uint64_t value) {
  if (value < kSub) return static_cast<size_t>(value);
  // value >> shift lies in [kHalf, kSub).
  const int shift = std::bit_width(value) - kSubBits;
  return static_cast<size_t>(kSub + (shift - 1) * kHalf + ((value >> shift) - kHalf));
}

uint64_t LatencyHistogram::BucketHighest(size_t index) {
  if (index < kSub) return index;
  const size_t k = index - kSub;
  const int shift = static_cast<int>(k / kHalf) + 1;
  const uint64_t lowest = (kHalf + k % kHalf) << shift;
  return lowest + ((uint64_t{1} << shift) - 1);
}

void LatencyHistogram::Record(uint64_t value) {
  ++buckets_[BucketIndex(value)];
  ++count_;
  sum_ += value;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  for (size_t i = 0; i < kBucketCount; ++i) buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
}

uint64_t LatencyHistogram::Percentile(double p) const {
  if (count_ == 0) return 0;
  p = std::clamp(p, 0.0, 100.0);
  uint64_t rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_)));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (size_t i = 0; i < kBucketCount; ++i) {
    seen += buckets_[i];
    if (seen >= rank) return std::clamp(BucketHighest(i), min_, max_);
  }
  return max_;
}

uint64_t LoadgenTotals::rejected_total() const {
  uint64_t n = 0;
  for (const auto& [code, count] : rejected) n += count;
  return n;
}

uint64_t LoadgenTotals::connection_errors_total() const {
  uint64_t n = 0;
  for (const auto& [reason, count] : connection_errors) n += count;
  return n;
}

std::string LoadgenTotals::Json() const {
  std::string out = absl::StrCat(
      "{\"sent\":", sent, ",\"acknowledged\":", acknowledged,
      ",\"rejected\":", JsonCounts(rejected), ",\"rejected_total\":", rejected_total(),
      ",\"failed\":", failed, ",\"not_sent\":", not_sent, ",\"overdue\":", overdue,
      ",\"recipients_accepted\":", recipients_accepted,
      ",\"recipients_rejected\":", JsonCounts(recipients_rejected),
      ",\"bytes\":", bytes_acknowledged, ",\"connections\":", connections,
      ",\"connection_errors\":", connection_errors_total(),
      ",\"connection_errors_by_reason\":", JsonCounts(connection_errors),
      ",\"tls_handshakes\":", tls_handshakes, ",\"resumed_sessions\":", resumed_sessions,
      ",\"elapsed_s\":", Fixed(elapsed_s, 3),
      ",\"msgs_per_s\":", Fixed(PerSecond(acknowledged, elapsed_s), 1),
      ",\"mb_per_s\":", Fixed(PerSecond(bytes_acknowledged, elapsed_s) / 1e6, 3),
      ",\"handshakes_per_s\":", Fixed(PerSecond(tls_handshakes, elapsed_s), 1),
      ",\"latency_ms\":{");
  bool first = true;
  for (const Phase& ph : Phases(*this)) {
    const LatencyHistogram& h = *ph.histogram;
    absl::StrAppend(
        &out, first ? "" : ",", "\"", ph.name, "\":{\"count\":", h.count(),
        ",\"p50\":", Fixed(Ms(h.Percentile(50)), 3), ",\"p90\":", Fixed(Ms(h.Percentile(90)), 3),
        ",\"p99\":", Fixed(Ms(h.Percentile(99)), 3),
        ",\"p99.9\":", Fixed(Ms(h.Percentile(99.9)), 3), ",\"max\":", Fixed(Ms(h.max()), 3), "}");
    first = false;
  }
  out += "}}\n";
  return out;
}

std::string LoadgenTotals::Table() const {
  std::string out;
  absl::StrAppend(&out, absl::StrFormat("elapsed          %.3f s\n", elapsed_s));
  absl::StrAppend(&out, absl::StrFormat("sent             %d\n", sent));
  absl::StrAppend(&out, absl::StrFormat("acknowledged     %d  (%.1f msg/s, %.3f MB/s)\n",
                                        acknowledged, PerSecond(acknowledged, elapsed_s),
                                        PerSecond(bytes_acknowledged, elapsed_s) / 1e6));
  absl::StrAppend(
      &out, absl::StrFormat("rejected         %d  (%s)\n", rejected_total(), TextCounts(rejected)));
  absl::StrAppend(&out, absl::StrFormat("failed/not sent  %d / %d\n", failed, not_sent));
  if (overdue > 0) {
    absl::StrAppend(&out, absl::StrFormat("overdue          %d (due, never started)\n", overdue));
  }
  absl::StrAppend(&out, absl::StrFormat("recipients       %d accepted, refused: %s\n",
                                        recipients_accepted, TextCounts(recipients_rejected)));
  absl::StrAppend(&out, absl::StrFormat("connections      %d, errors %d (%s)\n", connections,
                                        connection_errors_total(), TextCounts(connection_errors)));
  absl::StrAppend(&out,
                  absl::StrFormat("tls handshakes   %d (%.1f/s), resumed %d\n", tls_handshakes,
                                  PerSecond(tls_handshakes, elapsed_s), resumed_sessions));
  absl::StrAppend(&out, absl::StrFormat("\n%-16s %9s %9s %9s %9s %9s %9s\n", "latency (ms)",
                                        "count", "p50", "p90", "p99", "p99.9", "max"));
  for (const Phase& ph : Phases(*this)) {
    const LatencyHistogram& h = *ph.histogram;
    absl::StrAppend(
        &out, absl::StrFormat("%-16s %9d %9.3f %9.3f %9.3f %9.3f %9.3f\n", ph.name, h.count(),
                              Ms(h.Percentile(50)), Ms(h.Percentile(90)), Ms(h.Percentile(99)),
                              Ms(h.Percentile(99.9)), Ms(h.max())));
  }
  return out;
}

}  // namespace postern::bench
