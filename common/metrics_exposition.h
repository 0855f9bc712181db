// Renders the shards' metric regions as Prometheus text format 0.0.4.
// Counters and histograms are summed over shards; metrics marked per_shard are
// one series per shard. Only configured listeners appear as label values.
#ifndef POSTERN_COMMON_METRICS_EXPOSITION_H_
#define POSTERN_COMMON_METRICS_EXPOSITION_H_

#include <string>
#include <vector>

#include "common/metric_region.h"

namespace postern::metrics {

struct ExpositionInput {
  std::vector<const MetricRegion*> shards;  // index = shard number
  std::vector<std::string> listener_names;  // index = listener label value
};

std::string RenderPrometheus(const ExpositionInput& input);

}  // namespace postern::metrics

#endif  // POSTERN_COMMON_METRICS_EXPOSITION_H_
