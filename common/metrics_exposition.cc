#include "common/metrics_exposition.h"

#include <algorithm>
#include <charconv>
#include <string_view>

#include "absl/strings/str_cat.h"

namespace postern::metrics {
namespace {

constexpr std::string_view kPrefix = "postern_";

// Shortest text that reads back as the same double ("0.005", not
// "0.0050000000000000001").
std::string FormatDouble(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

std::string EscapeLabel(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

using LabelSet = std::vector<std::pair<std::string, std::string>>;

// The label sets a metric's series carry, paired with the series' label
// index. Listener dimensions show only configured listeners.
std::vector<std::pair<size_t, LabelSet>> Series(const MetricDef& def, const ExpositionInput& in) {
  std::vector<std::pair<size_t, LabelSet>> out;
  size_t listeners = std::min(in.listener_names.size(), kMaxListeners);
  switch (def.label) {
    case LabelKind::kNone:
      out.push_back({0, {}});
      break;
    case LabelKind::kListener:
      for (size_t i = 0; i < listeners; ++i)
        out.push_back({i, {{"listener", in.listener_names[i]}}});
      break;
    case LabelKind::kRejectReason:
      for (size_t i = 0; i < RejectReasonNames().size(); ++i) {
        out.push_back({i, {{"reason", std::string(RejectReasonNames()[i])}}});
      }
      break;
    case LabelKind::kListenerTls:
      for (size_t l = 0; l < listeners; ++l) {
        for (size_t o = 0; o < TlsOutcomes().size(); ++o) {
          const TlsOutcome& t = TlsOutcomes()[o];
          out.push_back({l * TlsOutcomes().size() + o,
                         {{"listener", in.listener_names[l]},
                          {"version", std::string(t.version)},
                          {"cipher_class", std::string(t.cipher_class)},
                          {"result", std::string(t.result)}}});
        }
      }
      break;
    case LabelKind::kVerb:
      for (size_t i = 0; i < VerbNames().size(); ++i) {
        out.push_back({i, {{"verb", std::string(VerbNames()[i])}}});
      }
      break;
    case LabelKind::kAuthResult:
      for (size_t i = 0; i < AuthResultNames().size(); ++i) {
        out.push_back({i, {{"result", std::string(AuthResultNames()[i])}}});
      }
      break;
    case LabelKind::kDeliveryResult:
      for (size_t i = 0; i < DeliveryResultNames().size(); ++i) {
        out.push_back({i, {{"result", std::string(DeliveryResultNames()[i])}}});
      }
      break;
    case LabelKind::kDeferReason:
      for (size_t i = 0; i < DeferReasonNames().size(); ++i) {
        out.push_back({i, {{"reason", std::string(DeferReasonNames()[i])}}});
      }
      break;
    case LabelKind::kOutboundTls:
      for (size_t i = 0; i < OutboundTlsNames().size(); ++i) {
        out.push_back({i, {{"tls", std::string(OutboundTlsNames()[i])}}});
      }
      break;
  }
  return out;
}

// Joins label pairs into "{a="x",b="y"}" (or "" when there are none).
std::string Labels(const std::vector<std::pair<std::string, std::string>>& pairs) {
  std::string out;
  for (const auto& [k, v] : pairs) {
    if (k.empty()) continue;
    absl::StrAppend(&out, out.empty() ? "{" : ",", k, "=\"", EscapeLabel(v), "\"");
  }
  if (!out.empty()) out.push_back('}');
  return out;
}

void RenderHistogram(MetricId id, const std::string& name,
                     const std::vector<const MetricRegion*>& regions,
                     const std::vector<std::pair<std::string, std::string>>& base_labels,
                     size_t label, std::string* out) {
  std::span<const double> bounds = BucketBounds(MetricDefs()[id].buckets);
  uint64_t cumulative = 0;
  for (size_t b = 0; b <= bounds.size(); ++b) {
    for (const MetricRegion* r : regions) cumulative += r->Bucket(id, label, b);
    auto labels = base_labels;
    labels.emplace_back("le", b < bounds.size() ? FormatDouble(bounds[b]) : "+Inf");
    absl::StrAppend(out, name, "_bucket", Labels(labels), " ", cumulative, "\n");
  }
  double sum = 0;
  uint64_t count = 0;
  for (const MetricRegion* r : regions) {
    sum += r->Sum(id, label);
    count += r->Count(id, label);
  }
  absl::StrAppend(out, name, "_sum", Labels(base_labels), " ", FormatDouble(sum), "\n");
  absl::StrAppend(out, name, "_count", Labels(base_labels), " ", count, "\n");
}

}  // namespace

std::string RenderPrometheus(const ExpositionInput& in) {
  std::string out;
  for (size_t m = 0; m < kMetricCount; ++m) {
    const MetricDef& def = MetricDefs()[m];
    auto id = static_cast<MetricId>(m);
    std::string name = std::string(kPrefix) + std::string(def.name);
    std::string_view type = def.type == MetricType::kCounter ? "counter"
                            : def.type == MetricType::kGauge ? "gauge"
                                                             : "histogram";
    out += "# HELP " + name + " " + std::string(def.help) + "\n# TYPE " + name + " " +
           std::string(type) + "\n";
    std::vector<std::pair<size_t, LabelSet>> series = Series(def, in);

    // Per-shard metrics: one series per shard; others: one series summed.
    std::vector<std::vector<const MetricRegion*>> groups;
    std::vector<std::string> group_shard;
    if (def.per_shard) {
      for (size_t s = 0; s < in.shards.size(); ++s) {
        groups.push_back({in.shards[s]});
        group_shard.push_back(absl::StrCat(s));
      }
    } else {
      groups.push_back(in.shards);
      group_shard.emplace_back();
    }
    for (size_t g = 0; g < groups.size(); ++g) {
      for (const auto& [index, set] : series) {
        LabelSet labels;
        if (!group_shard[g].empty()) labels.emplace_back("shard", group_shard[g]);
        labels.insert(labels.end(), set.begin(), set.end());
        if (def.type == MetricType::kHistogram) {
          RenderHistogram(id, name, groups[g], labels, index, &out);
          continue;
        }
        uint64_t v = 0;
        for (const MetricRegion* r : groups[g]) v += r->Get(id, index);
        absl::StrAppend(&out, name, Labels(labels), " ", v, "\n");
      }
    }
  }
  return out;
}

}  // namespace postern::metrics
