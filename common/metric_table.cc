#include "common/metric_table.h"

#include <algorithm>

namespace postern::metrics {
namespace {

constexpr std::array<MetricDef, kMetricCount> kDefs = {{
    {"connections_accepted_total", "SMTP connections accepted, by listener.", MetricType::kCounter,
     LabelKind::kListener, Buckets::kNone},
    {"connections_active", "SMTP connections open now, by listener.", MetricType::kGauge,
     LabelKind::kListener, Buckets::kNone},
    {"connections_refused_total", "Connections closed at once because a limit was reached.",
     MetricType::kCounter, LabelKind::kListener, Buckets::kNone},
    {"messages_accepted_total", "Messages durably spooled and answered with 250, by listener.",
     MetricType::kCounter, LabelKind::kListener, Buckets::kNone},
    {"messages_rejected_total", "Commands or messages refused, by reason.", MetricType::kCounter,
     LabelKind::kRejectReason, Buckets::kNone},
    {"received_bytes_total", "Octets received from SMTP clients, by listener.",
     MetricType::kCounter, LabelKind::kListener, Buckets::kNone},
    {"smtp_commands_total", "SMTP command lines processed, by verb.", MetricType::kCounter,
     LabelKind::kVerb, Buckets::kNone},
    {"spool_write_seconds", "Time from a message's submission to the spool until it is synced.",
     MetricType::kHistogram, LabelKind::kNone, Buckets::kLatencySeconds},
    {"spool_batch_messages", "Messages per synced spool write (group commit).",
     MetricType::kHistogram, LabelKind::kNone, Buckets::kBatchSize},
    {"spool_write_errors_total", "Spool writes that failed (answered 452 4.3.1).",
     MetricType::kCounter, LabelKind::kNone, Buckets::kNone},
    {"spool_messages", "Messages in the shard's spool.", MetricType::kGauge, LabelKind::kNone,
     Buckets::kNone, true},
    {"worker_up", "1 while the shard's worker is running and listening.", MetricType::kGauge,
     LabelKind::kNone, Buckets::kNone, true},
    {"policy_version", "Configuration version applied by the shard's worker.", MetricType::kGauge,
     LabelKind::kNone, Buckets::kNone, true},
    {"worker_restarts_total", "Times the supervisor restarted the shard's worker.",
     MetricType::kCounter, LabelKind::kNone, Buckets::kNone, true},
    {"tls_handshakes_total", "TLS handshakes on SMTP listeners, by listener, version and result.",
     MetricType::kCounter, LabelKind::kListenerTls, Buckets::kNone},
    {"starttls_discarded_bytes_total",
     "Plaintext bytes a client pipelined behind STARTTLS, discarded unread (injection attempts).",
     MetricType::kCounter, LabelKind::kListener, Buckets::kNone},
    {"proxy_refused_total",
     "Connections to a proxy_protocol listener from a peer outside its proxy_protocol_from, "
     "refused (421 4.7.1) before any PROXY header was read.",
     MetricType::kCounter, LabelKind::kListener, Buckets::kNone},
    {"auth_attempts_total", "SMTP AUTH attempts, by result.", MetricType::kCounter,
     LabelKind::kAuthResult, Buckets::kNone},
    {"deliveries_total", "Recipient delivery attempts, by result.", MetricType::kCounter,
     LabelKind::kDeliveryResult, Buckets::kNone},
    {"deferrals_total", "Recipients deferred, by reason class.", MetricType::kCounter,
     LabelKind::kDeferReason, Buckets::kNone},
    {"dsns_sent_total", "Delivery status notifications queued (bounces and delay warnings).",
     MetricType::kCounter, LabelKind::kNone, Buckets::kNone},
    {"expiries_total",
     "Recipients failed because a retry limit ran out (max_queue_lifetime, or "
     "tls_failure_max_defer for reason tls_required), by the last deferral reason.",
     MetricType::kCounter, LabelKind::kDeferReason, Buckets::kNone},
    {"delivery_seconds", "Time from a delivery attempt's start to its last reply.",
     MetricType::kHistogram, LabelKind::kNone, Buckets::kLatencySeconds},
    {"outbound_sessions_total", "Outbound SMTP sessions, by TLS outcome.", MetricType::kCounter,
     LabelKind::kOutboundTls, Buckets::kNone},
    {"outbound_connections_active", "Outbound SMTP connections open now.", MetricType::kGauge,
     LabelKind::kNone, Buckets::kNone},
    {"outbound_tls_testing_failures_total",
     "Sessions a partner policy in testing mode would have refused, by RFC 8460 result type.",
     MetricType::kCounter, LabelKind::kOutboundTls, Buckets::kNone},
    {"outbound_plaintext_fallbacks_total",
     "Opportunistic TLS handshakes that failed, followed by a plaintext retry.",
     MetricType::kCounter, LabelKind::kNone, Buckets::kNone},
    {"queue_messages", "Messages in the shard's queue.", MetricType::kGauge, LabelKind::kNone,
     Buckets::kNone, true},
    {"queue_deferred_messages", "Messages of the shard waiting for a retry.", MetricType::kGauge,
     LabelKind::kNone, Buckets::kNone, true},
    {"queue_held_messages", "Messages of the shard on operator hold.", MetricType::kGauge,
     LabelKind::kNone, Buckets::kNone, true},
    {"queue_oldest_seconds", "Age of the shard's oldest queued message.", MetricType::kGauge,
     LabelKind::kNone, Buckets::kNone, true},
}};

// Keep "other" last: unknown reasons land there.
constexpr std::array<std::string_view, 27> kRejectReasons = {
    "relay_denied",
    "line_too_long",
    "bare_lf",
    "too_large",
    "too_many_recipients",
    "bad_sequence",
    "syntax",
    "unknown_command",
    "too_many_errors",
    "spool_error",
    "not_implemented",
    "unsupported_parameter",
    "smtputf8_required",
    "proxy_header",
    "tls_required",
    "auth_required_tls",
    "auth_failed",
    "auth_aborted",
    "auth_throttled",
    "auth_unavailable",
    "auth_mechanism",
    "sender_not_owned",
    "client_cert_required",
    "client_cert_rejected",
    "bdat_out_of_sync",
    "pregreet",
    "other",
};

// Failure classes follow the TLS alert a handshake ends with.
constexpr std::array<TlsOutcome, 11> kTlsOutcomes = {{
    {"TLSv1.3", "strong", "ok"},
    {"TLSv1.2", "strong", "ok"},
    {"TLSv1.2", "pfs", "ok"},
    {"TLSv1.2", "compat", "ok"},
    {"none", "none", "protocol_version"},
    {"none", "none", "no_shared_cipher"},
    {"none", "none", "bad_certificate"},
    {"none", "none", "eof"},
    {"none", "none", "timeout"},
    {"none", "none", "other"},
    {"TLSv1.3", "compat", "ok"},  // never expected: TLS 1.3 suites are all strong
}};

constexpr std::array<std::string_view, 3> kAuthResults = {"ok", "failed", "throttled"};

constexpr std::array<std::string_view, 15> kVerbs = {
    "EHLO", "HELO", "MAIL", "RCPT", "DATA",     "BDAT", "RSET",    "NOOP",
    "QUIT", "HELP", "VRFY", "EXPN", "STARTTLS", "AUTH", "UNKNOWN",
};

constexpr std::array<std::string_view, 3> kDeliveryResults = {"delivered", "deferred", "failed"};
constexpr std::array<std::string_view, 5> kDeferReasons = {"connection", "temporary_reply",
                                                           "tls_required", "dns", "other"};
constexpr std::array<std::string_view, 12> kOutboundTls = {
    "plaintext",
    "tls_verified",
    "tls_pinned",
    "tls_unverified",
    "starttls-not-supported",
    "certificate-host-mismatch",
    "certificate-expired",
    "certificate-not-trusted",
    "validation-failure",
    "pin-mismatch",
    "protocol-version-too-low",
    "other",
};

constexpr std::array<double, 14> kLatency = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
                                             0.1,    0.2,   0.5,   1,     2,    5,    10};
constexpr std::array<double, 10> kBatch = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};

}  // namespace

std::span<const MetricDef> MetricDefs() { return kDefs; }

std::span<const std::string_view> RejectReasonNames() { return kRejectReasons; }

size_t RejectReasonIndex(std::string_view reason) {
  auto it = std::find(kRejectReasons.begin(), kRejectReasons.end(), reason);
  if (it == kRejectReasons.end()) return kRejectReasons.size() - 1;
  return static_cast<size_t>(it - kRejectReasons.begin());
}

std::span<const TlsOutcome> TlsOutcomes() { return kTlsOutcomes; }

size_t ListenerTlsIndex(size_t listener, std::string_view version, std::string_view cipher_class,
                        std::string_view failure) {
  // Fallbacks: "other" for an unknown failure, TLSv1.2/compat for an
  // unknown success.
  size_t outcome = failure.empty() ? 3 : 9;
  for (size_t i = 0; i < kTlsOutcomes.size(); ++i) {
    const TlsOutcome& o = kTlsOutcomes[i];
    bool ok = o.result == "ok";
    if (failure.empty() ? (ok && o.version == version && o.cipher_class == cipher_class)
                        : (!ok && o.result == failure)) {
      outcome = i;
      break;
    }
  }
  if (listener >= kMaxListeners) listener = kMaxListeners - 1;
  return listener * kTlsOutcomes.size() + outcome;
}

std::span<const std::string_view> AuthResultNames() { return kAuthResults; }

size_t AuthResultIndex(std::string_view result) {
  for (size_t i = 0; i < kAuthResults.size(); ++i) {
    if (kAuthResults[i] == result) return i;
  }
  return 1;  // "failed": an unknown result is never counted as success
}

std::span<const std::string_view> VerbNames() { return kVerbs; }

std::span<const std::string_view> DeliveryResultNames() { return kDeliveryResults; }
std::span<const std::string_view> DeferReasonNames() { return kDeferReasons; }
std::span<const std::string_view> OutboundTlsNames() { return kOutboundTls; }

size_t NameIndex(std::span<const std::string_view> names, std::string_view name) {
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) return i;
  }
  return names.size() - 1;
}

size_t VerbIndex(std::string_view verb) {
  for (size_t i = 0; i < kVerbs.size(); ++i) {
    if (kVerbs[i] == verb) return i;
  }
  return kVerbs.size() - 1;
}

std::span<const double> BucketBounds(Buckets b) {
  switch (b) {
    case Buckets::kLatencySeconds:
      return kLatency;
    case Buckets::kBatchSize:
      return kBatch;
    case Buckets::kNone:
      break;
  }
  return {};
}

size_t LabelCardinality(LabelKind kind) {
  switch (kind) {
    case LabelKind::kNone:
      return 1;
    case LabelKind::kListener:
      return kMaxListeners;
    case LabelKind::kRejectReason:
      return kRejectReasons.size();
    case LabelKind::kListenerTls:
      return kMaxListeners * kTlsOutcomes.size();
    case LabelKind::kAuthResult:
      return kAuthResults.size();
    case LabelKind::kVerb:
      return kVerbs.size();
    case LabelKind::kDeliveryResult:
      return kDeliveryResults.size();
    case LabelKind::kDeferReason:
      return kDeferReasons.size();
    case LabelKind::kOutboundTls:
      return kOutboundTls.size();
  }
  return 1;
}

size_t SlotsPerSeries(MetricId id) {
  const MetricDef& d = kDefs[id];
  if (d.type != MetricType::kHistogram) return 1;
  return BucketBounds(d.buckets).size() + 1 + 2;  // buckets, +Inf, sum, count
}

namespace {
size_t SlotsBefore(uint32_t id) {
  size_t offset = 0;
  for (uint32_t i = 0; i < id; ++i) {
    offset += SlotsPerSeries(static_cast<MetricId>(i)) * LabelCardinality(kDefs[i].label);
  }
  return offset;
}
}  // namespace

size_t SlotOffset(MetricId id, size_t label_index) {
  return SlotsBefore(id) + label_index * SlotsPerSeries(id);
}

size_t TotalSlots() { return SlotsBefore(kMetricCount); }

uint64_t LayoutHash() {
  // FNV-1a over names, types and cardinalities: a worker and a supervisor
  // built from different tables refuse to share a region.
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](uint64_t v) {
    h ^= v;
    h *= 1099511628211ULL;
  };
  for (size_t i = 0; i < kDefs.size(); ++i) {
    for (char c : kDefs[i].name) mix(static_cast<unsigned char>(c));
    mix(static_cast<uint64_t>(kDefs[i].type));
    mix(SlotsPerSeries(static_cast<MetricId>(i)) * LabelCardinality(kDefs[i].label));
  }
  return h;
}

size_t RegionBytes() { return sizeof(RegionHeader) + TotalSlots() * sizeof(uint64_t); }

}  // namespace postern::metrics
