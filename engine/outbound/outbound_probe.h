// OutboundProbe: logs and counts what the outbound transport reports
// (sessions by TLS outcome, testing-mode refusals, plaintext fallbacks, the
// trace line of each hop, open connections).
//
// Threading: the loop thread. Borrows the metric region.
#ifndef POSTERN_ENGINE_OUTBOUND_OUTBOUND_PROBE_H_
#define POSTERN_ENGINE_OUTBOUND_OUTBOUND_PROBE_H_

#include <string>

#include "common/log.h"
#include "common/metric_region.h"
#include "common/metric_table.h"
#include "engine/outbound/outbound_connection.h"

namespace postern::engine {

class OutboundProbe : public OutboundObserver {
 public:
  explicit OutboundProbe(metrics::MetricRegion* metrics) : metrics_(metrics) {}
  void SessionDone(const std::string& label, const std::string& tls,
                   const std::string& detail) override {
    metrics_->Add(metrics::kOutboundSessions, metrics::NameIndex(metrics::OutboundTlsNames(), tls));
    log::LogEvent("outbound_failed", log::Level::kWarn)
        .Add("relay", label)
        .Add("result", tls)
        .Add("detail", detail)
        .Emit();
  }
  void TestingWouldFail(const std::string& domain, const std::string& label,
                        const std::string& result_type, const std::string& detail) override {
    metrics_->Add(metrics::kOutboundTlsTestingFailures,
                  metrics::NameIndex(metrics::OutboundTlsNames(), result_type));
    log::LogEvent("tls_policy_testing_would_fail", log::Level::kWarn)
        .Add("domain", domain)
        .Add("relay", label)
        .Add("result", result_type)
        .Add("detail", detail)
        .Emit();
  }
  void PlaintextFallback(const std::string& domain, const std::string& label) override {
    metrics_->Add(metrics::kOutboundPlaintextFallbacks, 0);
    log::LogEvent("tls_fallback_plaintext", log::Level::kWarn)
        .Add("domain", domain)
        .Add("relay", label)
        .Emit();
  }
  void MessageSent(const queue::DeliveryJob& job, const std::string& label, const std::string& tls,
                   const std::string& tls_version, const std::string& cipher,
                   const std::string& verification, const std::string& reply) override {
    metrics_->Add(metrics::kOutboundSessions, metrics::NameIndex(metrics::OutboundTlsNames(), tls));
    log::LogEvent("sent")
        .Add("queue_id", job.queue_id)
        .Add("domain", job.domain)
        .Add("relay", label)
        .Add("tls", tls_version.empty() ? "none" : tls_version)
        .Add("cipher", cipher)
        .Add("verification", verification)
        .Add("reply", reply)
        .Emit();
  }
  void ConnectionsChanged(size_t open) override {
    metrics_->Set(metrics::kOutboundConnectionsActive, 0, open);
  }

 private:
  metrics::MetricRegion* metrics_;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_OUTBOUND_OUTBOUND_PROBE_H_
