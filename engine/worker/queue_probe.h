// QueueProbe: logs and counts what the queue manager reports (deliveries,
// deferrals by reason, expiries, DSNs, attempt latency, failed writes).
//
// Threading: the loop thread. Borrows the metric region.
#ifndef POSTERN_ENGINE_WORKER_QUEUE_PROBE_H_
#define POSTERN_ENGINE_WORKER_QUEUE_PROBE_H_

#include <string>

#include "common/log.h"
#include "common/metric_region.h"
#include "common/metric_table.h"
#include "queue/queue_manager.h"

namespace postern::engine {

class QueueProbe : public queue::QueueObserver {
 public:
  explicit QueueProbe(metrics::MetricRegion* metrics) : metrics_(metrics) {}
  void RecipientDone(const queue::v1::Envelope& envelope, int recipient,
                     const queue::AttemptResult& r, queue::Decision decision) override {
    const std::string result(queue::DecisionLabel(decision));
    metrics_->Add(metrics::kDeliveries, metrics::NameIndex(metrics::DeliveryResultNames(), result));
    const size_t reason = metrics::NameIndex(metrics::DeferReasonNames(),
                                             std::string(queue::DeferReasonLabel(r.reason)));
    if (decision == queue::Decision::kDeferred) metrics_->Add(metrics::kDeferrals, reason);
    // A temporary outcome that fails the recipient: a limit ran out.
    if (decision == queue::Decision::kFailed && r.kind == queue::AttemptResult::kTemporary) {
      metrics_->Add(metrics::kExpiries, reason);
    }
    log::LogEvent(result,
                  decision == queue::Decision::kDelivered ? log::Level::kInfo : log::Level::kWarn)
        .Add("queue_id", envelope.queue_id())
        .Add("to", envelope.recipients(recipient).address())
        .Add("relay", r.remote_mta)
        .Add("status", envelope.recipients(recipient).status())
        .Add("reason", decision == queue::Decision::kDeferred
                           ? std::string(queue::DeferReasonLabel(r.reason))
                           : std::string())
        .Add("tls_result", r.tls_result)
        .Add("reply", r.diagnostic)
        .Emit();
  }
  void DsnQueued(const queue::v1::Envelope& dsn, const std::string& original_id) override {
    metrics_->Add(metrics::kDsnsSent, 0);
    log::LogEvent("dsn_queued")
        .Add("queue_id", dsn.queue_id())
        .Add("original", original_id)
        .Add("to", dsn.recipients_size() > 0 ? dsn.recipients(0).address() : "")
        .Emit();
  }
  void AttemptDone(const std::string& queue_id, absl::Duration took) override {
    metrics_->Observe(metrics::kDeliverySeconds, 0, absl::ToDoubleSeconds(took));
  }
  void WriteFailed(const std::string& queue_id, const absl::Status& status) override {
    log::LogEvent("queue_write_failed", log::Level::kError)
        .Add("queue_id", queue_id)
        .Add("error", std::string(status.message()))
        .Emit();
  }

 private:
  metrics::MetricRegion* metrics_;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_WORKER_QUEUE_PROBE_H_
