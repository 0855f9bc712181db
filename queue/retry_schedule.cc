#include "queue/retry_schedule.h"

#include <algorithm>
#include <cassert>
#include <utility>

namespace postern::queue {
namespace {

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

}  // namespace

std::vector<absl::Duration> RetrySchedule::DefaultSteps() {
  return {absl::Minutes(1), absl::Minutes(5), absl::Minutes(15), absl::Minutes(30), absl::Hours(1)};
}

RetrySchedule::RetrySchedule(std::vector<absl::Duration> steps, double jitter)
    : steps_(std::move(steps)), jitter_(jitter) {
  if (steps_.empty()) steps_ = DefaultSteps();
  assert(jitter_ >= 0.0 && jitter_ <= 1.0);
  for ([[maybe_unused]] absl::Duration d : steps_) assert(d > absl::ZeroDuration());
}

RetrySchedule RetrySchedule::FromConfig(const config::v1::Delivery& delivery, double jitter) {
  std::vector<absl::Duration> steps;
  steps.reserve(delivery.retry_schedule_size());
  for (const auto& d : delivery.retry_schedule()) steps.push_back(FromProto(d));
  RetrySchedule schedule(std::move(steps), jitter);
  if (delivery.has_max_queue_lifetime()) {
    schedule.max_queue_lifetime_ = FromProto(delivery.max_queue_lifetime());
  }
  if (delivery.has_tls_failure_max_defer()) {
    schedule.tls_failure_max_defer_ = FromProto(delivery.tls_failure_max_defer());
  }
  if (delivery.has_delay_warning()) {
    schedule.delay_warning_ = FromProto(delivery.delay_warning());
  }
  return schedule;
}

absl::Duration RetrySchedule::Step(uint32_t attempts_so_far) const {
  const size_t index =
      std::min<size_t>(std::max<uint32_t>(attempts_so_far, 1) - 1, steps_.size() - 1);
  return steps_[index];
}

absl::Duration RetrySchedule::Delay(uint32_t attempts_so_far, absl::BitGenRef rng) const {
  const absl::Duration step = Step(attempts_so_far);
  if (jitter_ == 0.0) return step;
  // The top 53 bits make a double uniform in [0, 1) with every value exact,
  // which maps onto [1 - jitter, 1 + jitter).
  const double unit = static_cast<double>(rng() >> 11) * 0x1.0p-53;
  return step * (1.0 - jitter_ + 2.0 * jitter_ * unit);
}

}  // namespace postern::queue
