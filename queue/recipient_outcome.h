// Recipient outcomes: the one place that decides what a delivery attempt
// means for each recipient (delivered, retry later, or bounce), after Postfix
// smtp_trouble.c. A remote 4xx or 5xx is an outcome here, not an error.
//
// ApplyAttempt() records the attempt in the recipient's queue record and
// returns the decision:
//  - delivered: DELIVERED, final_time set.
//  - permanent (5xx, or a local permanent failure): FAILED at once.
//  - temporary (4xx, connection or DNS trouble, enforced TLS unavailable):
//    DEFERRED, unless a limit of the RetrySchedule ran out, checked in order:
//     1. reason TLS_REQUIRED and now - first_tls_failure_time >=
//        tls_failure_max_defer: FAILED with status 5.7.10 and a diagnostic
//        naming the RFC 8460 result type and the hop, e.g.
//        "TLS required but not available for 24h: starttls-not-supported
//        (mx.example[192.0.2.1])". The clock starts at the first TLS failure,
//        not at arrival: a message that waited on a dead host for a day still
//        gets the full TLS grace period. Deferrals for other reasons in
//        between neither reset it nor trigger it.
//     2. now - arrival >= max_queue_lifetime: FAILED, keeping the last 4.x.x
//        status (as Postfix reports expired mail) with a diagnostic saying the
//        message was queued too long, followed by the last error.
//    first_failure_time and first_tls_failure_time are set once, on the first
//    deferral of any kind and the first TLS_REQUIRED deferral.
//
// The message-level helpers read an Envelope and change nothing.
//
// Pure functions of their arguments: times and randomness are passed in, so
// a 24-hour retry sequence runs in a test in milliseconds. Thread-safe as far
// as the caller's protos are not shared.
#ifndef POSTERN_QUEUE_RECIPIENT_OUTCOME_H_
#define POSTERN_QUEUE_RECIPIENT_OUTCOME_H_

#include <string>
#include <vector>

#include "absl/random/bit_gen_ref.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "proto/queue.pb.h"
#include "queue/retry_schedule.h"

namespace postern::queue {

// What happened to one recipient in one delivery attempt.
struct AttemptResult {
  enum Kind {
    kDelivered,  // 2xx to the end of DATA (or its LMTP equivalent)
    kPermanent,  // 5xx, or a local error retrying cannot fix
    kTemporary,  // 4xx, connection or DNS trouble, enforced TLS unavailable
  };
  Kind kind = kTemporary;
  // Why it was temporary; ignored for the other kinds.
  v1::DeferReason reason = v1::DEFER_REASON_UNSPECIFIED;
  // Enhanced status code ("2.0.0", "4.4.1", "5.1.1"). Empty: the generic
  // code of the kind (2.0.0, 5.0.0, 4.0.0).
  std::string status;
  // The remote reply ("550 5.1.1 <x>: unknown user") or a local diagnostic
  // ("connect to mx.example[192.0.2.1]:25: Connection refused").
  std::string diagnostic;
  std::string tls_result;  // RFC 8460 result type when TLS failed, else ""
  std::string remote_mta;  // "mx.example[192.0.2.1]", "" when none answered
  // Delivered to a server that does not offer DSN while the sender asked
  // for NOTIFY=SUCCESS: the notice is ours to send ("relayed", RFC 3461
  // 4.1 / RFC 3464 2.3.3).
  bool relayed_without_dsn = false;
};

enum class Decision {
  kDelivered,
  kDeferred,  // retry at the message's next attempt
  kFailed,    // bounce (a DSN to the sender, unless NOTIFY or is_dsn forbid)
};

// Records `result` in `*r` (attempts, state, status, last_error, last_reason,
// tls_result, remote_mta, first_*_time, final_time) and returns the decision
// (rules at the top of this file). `arrival` is the envelope's arrival_time.
// `r` must not be final yet (DELIVERED or FAILED): a final recipient is not
// attempted again, so that is a caller bug (debug assert).
Decision ApplyAttempt(v1::Recipient* r, const AttemptResult& result, absl::Time arrival,
                      absl::Time now, const RetrySchedule& schedule);

// When the message is tried again: now + schedule.Delay(schedule().attempts)
// with jitter. The caller counts the attempt in envelope.schedule().attempts
// first. Never later than the next expiry deadline still ahead of `now`
// (max_queue_lifetime, or tls_failure_max_defer for a recipient whose last
// deferral was TLS_REQUIRED), so a recipient bounces when its limit runs out
// rather than up to a full retry step after it.
absl::Time NextAttempt(const v1::Envelope& envelope, absl::Time now, const RetrySchedule& schedule,
                       absl::BitGenRef rng);

// True when every recipient is DELIVERED or FAILED (vacuously for none): the
// message can leave the queue once its DSNs are queued.
bool AllFinal(const v1::Envelope& envelope);

// Indexes into envelope.recipients() of those owed a delay warning now:
// DEFERRED, not delay_notified, deferred for at least
// schedule.delay_warning() since arrival (never when that is zero), and
// wanting one: RFC 3461 NOTIFY absent or listing DELAY, the sender not null,
// the message not itself a DSN. The caller sends the warning and sets
// delay_notified.
std::vector<int> DueForDelayWarning(const v1::Envelope& envelope, absl::Time now,
                                    const RetrySchedule& schedule);

// Short label for metrics and logs: "connection", "temporary_reply",
// "tls_required", "dns"; "unspecified" for anything else.
absl::string_view DeferReasonLabel(v1::DeferReason reason);

// "delivered", "deferred", "failed".
absl::string_view DecisionLabel(Decision decision);

}  // namespace postern::queue

#endif  // POSTERN_QUEUE_RECIPIENT_OUTCOME_H_
