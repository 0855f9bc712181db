// MetricRegion: one shard's counters in shared memory.
//
// posternd creates the region (memfd) per shard and keeps it for the node's
// life; the worker maps the inherited fd and counts into it. Writers: the
// worker's event loop thread for its own metrics, posternd for
// worker_restarts_total; each slot has exactly one writer, so updates are a
// relaxed load and store (no locked instructions on the data path), and
// readers see whole 64-bit values.
#ifndef POSTERN_COMMON_METRIC_REGION_H_
#define POSTERN_COMMON_METRIC_REGION_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "common/metric_table.h"

namespace postern::metrics {

class MetricRegion {
 public:
  // Creates a zeroed region backed by a new memfd (owned by the region).
  static absl::StatusOr<std::unique_ptr<MetricRegion>> Create();
  // Maps a region created by Create() in another process; verifies the
  // layout hash. Takes ownership of fd.
  static absl::StatusOr<std::unique_ptr<MetricRegion>> Attach(int fd);

  ~MetricRegion();
  MetricRegion(const MetricRegion&) = delete;
  MetricRegion& operator=(const MetricRegion&) = delete;

  int fd() const { return fd_; }

  void Add(MetricId id, size_t label, uint64_t delta = 1);
  void Set(MetricId id, size_t label, uint64_t value);
  void Observe(MetricId id, size_t label, double value);

  uint64_t Get(MetricId id, size_t label) const;
  // Histogram series: bucket i (i == bounds.size() is +Inf), sum, count.
  uint64_t Bucket(MetricId id, size_t label, size_t i) const;
  double Sum(MetricId id, size_t label) const;
  uint64_t Count(MetricId id, size_t label) const;

 private:
  MetricRegion(int fd, void* base);
  uint64_t Load(size_t slot) const;
  void Store(size_t slot, uint64_t v);

  int fd_;
  void* base_;
  uint64_t* slots_;
};

}  // namespace postern::metrics

#endif  // POSTERN_COMMON_METRIC_REGION_H_
