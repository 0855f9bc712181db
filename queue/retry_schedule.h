// RetrySchedule: when a deferred message is tried again, and how long the
// queue keeps trying before it gives up (config `delivery`, docs/CONFIG.md).
//
// The schedule is a list of steps: after the n-th failed attempt the message
// waits steps[n-1]; past the end of the list the last step repeats (the
// default 1m, 5m, 15m, 30m, 1h means "then every hour"). Each delay is spread
// uniformly over [d*(1-jitter), d*(1+jitter)], so the messages of one burst
// that deferred together (a destination that was down) do not come back in
// lockstep and knock it over again.
//
// The limits are read by queue/recipient_outcome.h, which owns the decisions:
//   max_queue_lifetime     a temporary failure this long after arrival bounces
//   tls_failure_max_defer  enforced-TLS failures bounce this long after the
//                          first one
//   delay_warning          deferred this long after arrival: tell the sender
//                          (Postfix delay_warning_time); zero turns it off
//
// Pure logic: no clock and no global random state. Callers pass the random
// source, so tests are deterministic.
//
// Threading: immutable after construction except for the set_ methods, which
// are meant for set-up. Const methods are safe to call from any thread; the
// random generator passed to Delay() is the caller's and must not be shared
// between threads without the caller's own synchronisation.
#ifndef POSTERN_QUEUE_RETRY_SCHEDULE_H_
#define POSTERN_QUEUE_RETRY_SCHEDULE_H_

#include <cstdint>
#include <vector>

#include "absl/random/bit_gen_ref.h"
#include "absl/time/time.h"
#include "proto/config.pb.h"

namespace postern::queue {

class RetrySchedule {
 public:
  static constexpr double kDefaultJitter = 0.1;

  // The defaults of config `delivery` (control/config_defaults.h).
  static std::vector<absl::Duration> DefaultSteps();  // 1m, 5m, 15m, 30m, 1h
  static constexpr absl::Duration kDefaultMaxQueueLifetime = absl::Hours(120);
  static constexpr absl::Duration kDefaultTlsFailureMaxDefer = absl::Hours(24);

  // `steps`: each positive (the config loader rejects anything else); an
  // empty list means DefaultSteps(). `jitter` is a fraction in [0, 1]; 0
  // gives the exact steps. Limits start at their defaults, delay warnings off.
  explicit RetrySchedule(std::vector<absl::Duration> steps = DefaultSteps(),
                         double jitter = kDefaultJitter);

  // From the config section. Absent durations and an empty retry_schedule
  // take the defaults above, so a Delivery message that never went through
  // control/config_defaults still yields the documented behaviour.
  static RetrySchedule FromConfig(const config::v1::Delivery& delivery,
                                  double jitter = kDefaultJitter);

  // How long to wait after `attempts_so_far` failed attempts: steps[n-1],
  // the last step once n is past the end (0 counts as 1), with jitter drawn
  // from `rng` (one 64-bit draw).
  absl::Duration Delay(uint32_t attempts_so_far, absl::BitGenRef rng) const;

  // The delay without jitter: the middle of Delay()'s range.
  absl::Duration Step(uint32_t attempts_so_far) const;

  const std::vector<absl::Duration>& steps() const { return steps_; }
  double jitter() const { return jitter_; }
  absl::Duration max_queue_lifetime() const { return max_queue_lifetime_; }
  absl::Duration tls_failure_max_defer() const { return tls_failure_max_defer_; }
  absl::Duration delay_warning() const { return delay_warning_; }

  // Each must be positive, except delay_warning, where zero means off.
  void set_max_queue_lifetime(absl::Duration d) { max_queue_lifetime_ = d; }
  void set_tls_failure_max_defer(absl::Duration d) { tls_failure_max_defer_ = d; }
  void set_delay_warning(absl::Duration d) { delay_warning_ = d; }

 private:
  std::vector<absl::Duration> steps_;  // never empty
  double jitter_;
  absl::Duration max_queue_lifetime_ = kDefaultMaxQueueLifetime;
  absl::Duration tls_failure_max_defer_ = kDefaultTlsFailureMaxDefer;
  absl::Duration delay_warning_ = absl::ZeroDuration();
};

}  // namespace postern::queue

#endif  // POSTERN_QUEUE_RETRY_SCHEDULE_H_
