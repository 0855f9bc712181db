// The one table of metric definitions shared by postern-worker (which counts)
// and posternd (which sums shards and serves Prometheus text). Both binaries
// compute the same shared-memory layout from this table, so adding a metric is
// one line here and nowhere else.
//
// A worker's counters live in one shared-memory region (MetricRegion) that
// posternd creates per shard and keeps across worker restarts, so counters
// stay monotonic when a worker is replaced.
#ifndef POSTERN_COMMON_METRIC_TABLE_H_
#define POSTERN_COMMON_METRIC_TABLE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace postern::metrics {

enum class MetricType { kCounter, kGauge, kHistogram };

// The dimension of a metric's single label, if any. Every value set is
// bounded (no per-address or per-domain labels).
enum class LabelKind {
  kNone,
  kListener,        // index of the listener in the config (names come from config)
  kRejectReason,    // RejectReasonNames()
  kListenerTls,     // listener x TlsOutcomes(): index ListenerTlsIndex()
  kAuthResult,      // AuthResultNames()
  kVerb,            // VerbNames()
  kDeliveryResult,  // DeliveryResultNames(): per recipient and attempt
  kDeferReason,     // DeferReasonNames()
  kOutboundTls,     // OutboundTlsNames(): TLS outcome of an outbound session
};

// Histogram bucket sets (upper bounds, +Inf implied).
enum class Buckets { kNone, kLatencySeconds, kBatchSize };

struct MetricDef {
  std::string_view name;  // without the "postern_" prefix
  std::string_view help;
  MetricType type;
  LabelKind label;
  Buckets buckets;
  // Exposed per shard (label shard="N") instead of summed over shards.
  bool per_shard = false;
};

// Metric ids: index into MetricDefs().
enum MetricId : uint32_t {
  kConnectionsAccepted,
  kConnectionsActive,
  kConnectionsRefused,
  kMessagesAccepted,
  kMessagesRejected,
  kBytesReceived,
  kSmtpCommands,
  kSpoolWriteSeconds,
  kSpoolBatchMessages,
  kSpoolWriteErrors,
  kSpoolMessages,
  kWorkerUp,
  kPolicyVersion,
  kWorkerRestarts,
  kTlsHandshakes,
  kStartTlsDiscardedBytes,
  kProxyRefused,
  kAuthAttempts,
  kDeliveries,
  kDeferrals,
  kDsnsSent,
  kExpiries,
  kDeliverySeconds,
  kOutboundSessions,
  kOutboundConnectionsActive,
  kOutboundTlsTestingFailures,
  kOutboundPlaintextFallbacks,
  kQueueMessages,
  kQueueDeferred,
  kQueueHeld,
  kQueueOldestSeconds,
  kMetricCount,
};

std::span<const MetricDef> MetricDefs();

// Reject reasons, in label order. Unknown reasons count as "other".
std::span<const std::string_view> RejectReasonNames();
size_t RejectReasonIndex(std::string_view reason);

std::span<const double> BucketBounds(Buckets b);

// A TLS handshake outcome: its version, cipher class and result labels.
struct TlsOutcome {
  std::string_view version;       // "TLSv1.2", "TLSv1.3", "none" for failures
  std::string_view cipher_class;  // "strong", "pfs", "compat" (the tls.ciphers
                                  // classes), "none" for failures
  std::string_view result;        // "ok" or a failure class
};
std::span<const TlsOutcome> TlsOutcomes();
// Index for kListenerTls: `version` and `cipher_class` are used for
// successes, `failure` for failures (empty means success). Unknown failures
// count as "other", unknown successes as TLSv1.2/compat.
size_t ListenerTlsIndex(size_t listener, std::string_view version, std::string_view cipher_class,
                        std::string_view failure);

std::span<const std::string_view> AuthResultNames();  // ok, failed, throttled

// delivered, deferred, failed
std::span<const std::string_view> DeliveryResultNames();
// connection, temporary_reply, tls_required, dns, other
std::span<const std::string_view> DeferReasonNames();
// Outbound session TLS outcomes: "plaintext", "tls_verified", "tls_pinned",
// "tls_unverified", then the RFC 8460 result types of failures, "other" last.
std::span<const std::string_view> OutboundTlsNames();
// Index in a name list; an unknown name counts as the last entry ("other").
size_t NameIndex(std::span<const std::string_view> names, std::string_view name);

// SMTP verbs for smtp_commands_total; anything else is "UNKNOWN" (last).
std::span<const std::string_view> VerbNames();
size_t VerbIndex(std::string_view verb);
size_t AuthResultIndex(std::string_view result);

// Most label values a kListener metric can take; listeners beyond this count
// share the last slot (the config validator refuses that many anyway).
inline constexpr size_t kMaxListeners = 16;

size_t LabelCardinality(LabelKind kind);

// Layout of one shard's region: a header followed by uint64 slots.
// Counter/gauge: one slot per label value. Histogram: per label value,
// (buckets + 1 (+Inf)) cumulative-free bucket counts, then sum (as double
// bits), then count.
struct RegionHeader {
  uint64_t magic;
  uint64_t layout_hash;
  uint64_t slot_count;
  uint64_t reserved;
};

inline constexpr uint64_t kRegionMagic = 0x504f5354'45524e4dULL;  // "POSTERNM"

size_t SlotOffset(MetricId id, size_t label_index);  // first slot of that series
size_t SlotsPerSeries(MetricId id);
size_t TotalSlots();
uint64_t LayoutHash();
size_t RegionBytes();

}  // namespace postern::metrics

#endif  // POSTERN_COMMON_METRIC_TABLE_H_
