#include "queue/recipient_outcome.h"

#include <algorithm>
#include <cassert>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/proto_time.h"

namespace postern::queue {
namespace {

bool IsFinal(v1::RecipientState state) {
  return state == v1::RECIPIENT_STATE_DELIVERED || state == v1::RECIPIENT_STATE_FAILED;
}

std::string TlsExpiredDiagnostic(const AttemptResult& result, absl::Duration limit) {
  std::string text =
      absl::StrCat("TLS required but not available for ", absl::FormatDuration(limit));
  if (!result.tls_result.empty()) absl::StrAppend(&text, ": ", result.tls_result);
  if (!result.remote_mta.empty()) absl::StrAppend(&text, " (", result.remote_mta, ")");
  return text;
}

std::string LifetimeExpiredDiagnostic(const AttemptResult& result, absl::Duration limit) {
  std::string text =
      absl::StrCat("message was queued too long (", absl::FormatDuration(limit), ")");
  if (!result.diagnostic.empty()) absl::StrAppend(&text, "; last error: ", result.diagnostic);
  return text;
}

// RFC 3461: without NOTIFY the MTA may warn of delays; with it, only when
// DELAY is listed (NEVER stands alone).
bool WantsDelayNotice(const v1::Recipient& r) {
  if (r.notify().empty()) return true;
  for (absl::string_view word : absl::StrSplit(r.notify(), ',')) {
    if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(word), "DELAY")) return true;
  }
  return false;
}

}  // namespace

Decision ApplyAttempt(v1::Recipient* r, const AttemptResult& result, absl::Time arrival,
                      absl::Time now, const RetrySchedule& schedule) {
  assert(!IsFinal(r->state()));
  r->set_attempts(r->attempts() + 1);
  r->set_last_error(result.diagnostic);
  r->set_tls_result(result.tls_result);
  r->set_remote_mta(result.remote_mta);

  switch (result.kind) {
    case AttemptResult::kDelivered:
      r->set_state(v1::RECIPIENT_STATE_DELIVERED);
      r->set_status(result.status.empty() ? "2.0.0" : result.status);
      *r->mutable_final_time() = ToProtoTimestamp(now);
      return Decision::kDelivered;

    case AttemptResult::kPermanent:
      r->set_state(v1::RECIPIENT_STATE_FAILED);
      r->set_status(result.status.empty() ? "5.0.0" : result.status);
      *r->mutable_final_time() = ToProtoTimestamp(now);
      return Decision::kFailed;

    case AttemptResult::kTemporary:
      break;
  }

  r->set_status(result.status.empty() ? "4.0.0" : result.status);
  r->set_last_reason(result.reason);
  if (!r->has_first_failure_time()) *r->mutable_first_failure_time() = ToProtoTimestamp(now);
  const bool tls = result.reason == v1::DEFER_REASON_TLS_REQUIRED;
  if (tls && !r->has_first_tls_failure_time()) {
    *r->mutable_first_tls_failure_time() = ToProtoTimestamp(now);
  }

  if (tls &&
      now - FromProtoTimestamp(r->first_tls_failure_time()) >= schedule.tls_failure_max_defer()) {
    r->set_state(v1::RECIPIENT_STATE_FAILED);
    r->set_status("5.7.10");
    r->set_last_error(TlsExpiredDiagnostic(result, schedule.tls_failure_max_defer()));
    *r->mutable_final_time() = ToProtoTimestamp(now);
    return Decision::kFailed;
  }
  if (now - arrival >= schedule.max_queue_lifetime()) {
    r->set_state(v1::RECIPIENT_STATE_FAILED);
    r->set_last_error(LifetimeExpiredDiagnostic(result, schedule.max_queue_lifetime()));
    *r->mutable_final_time() = ToProtoTimestamp(now);
    return Decision::kFailed;
  }
  r->set_state(v1::RECIPIENT_STATE_DEFERRED);
  return Decision::kDeferred;
}

absl::Time NextAttempt(const v1::Envelope& envelope, absl::Time now, const RetrySchedule& schedule,
                       absl::BitGenRef rng) {
  absl::Time next = now + schedule.Delay(envelope.schedule().attempts(), rng);
  // Deadlines already behind `now` are ignored: the recipient expires on its
  // next failed attempt whenever that comes, and clamping to them would
  // retry at once, forever.
  auto clamp = [&](absl::Time deadline) {
    if (deadline > now) next = std::min(next, deadline);
  };
  const absl::Time arrival = FromProtoTimestamp(envelope.arrival_time());
  bool any_open = false;
  for (const v1::Recipient& r : envelope.recipients()) {
    if (IsFinal(r.state())) continue;
    any_open = true;
    if (r.last_reason() == v1::DEFER_REASON_TLS_REQUIRED && r.has_first_tls_failure_time()) {
      clamp(FromProtoTimestamp(r.first_tls_failure_time()) + schedule.tls_failure_max_defer());
    }
  }
  if (any_open) clamp(arrival + schedule.max_queue_lifetime());
  return next;
}

bool AllFinal(const v1::Envelope& envelope) {
  return std::all_of(envelope.recipients().begin(), envelope.recipients().end(),
                     [](const v1::Recipient& r) { return IsFinal(r.state()); });
}

std::vector<int> DueForDelayWarning(const v1::Envelope& envelope, absl::Time now,
                                    const RetrySchedule& schedule) {
  std::vector<int> due;
  if (schedule.delay_warning() <= absl::ZeroDuration()) return due;
  // Nobody to tell: the null sender, or a DSN of our own (never answered
  // with another, RFC 3461 section 2.3 / RFC 5321 section 6.1).
  if (envelope.sender().empty() || envelope.is_dsn()) return due;
  if (now - FromProtoTimestamp(envelope.arrival_time()) < schedule.delay_warning()) return due;
  for (int i = 0; i < envelope.recipients_size(); ++i) {
    const v1::Recipient& r = envelope.recipients(i);
    if (r.state() == v1::RECIPIENT_STATE_DEFERRED && !r.delay_notified() && WantsDelayNotice(r)) {
      due.push_back(i);
    }
  }
  return due;
}

absl::string_view DeferReasonLabel(v1::DeferReason reason) {
  switch (reason) {
    case v1::DEFER_REASON_CONNECTION:
      return "connection";
    case v1::DEFER_REASON_TEMPORARY_REPLY:
      return "temporary_reply";
    case v1::DEFER_REASON_TLS_REQUIRED:
      return "tls_required";
    case v1::DEFER_REASON_DNS:
      return "dns";
    default:
      return "unspecified";
  }
}

absl::string_view DecisionLabel(Decision decision) {
  switch (decision) {
    case Decision::kDelivered:
      return "delivered";
    case Decision::kDeferred:
      return "deferred";
    case Decision::kFailed:
      return "failed";
  }
  return "unspecified";  // not reached: the switch covers every value
}

}  // namespace postern::queue
