// Queue administration, the decisions only: which messages a listing shows
// and how, and what each operator action (queue_admin.proto) does to an
// envelope. No I/O: the caller (QueueManager on the worker's loop) reads the
// spool, knows which messages are in delivery, and writes the plan back;
// the supervisor merges the pages of several workers with MergeListPages().
//
// Vocabulary, after Postfix's postqueue/postsuper:
// - a message is HELD while an operator hold is on it (schedule.held), else
//   ACTIVE while it is in delivery, DEFERRED once any recipient waits for a
//   retry, and ACTIVE otherwise (never tried yet);
// - its recipients "not yet final" are those PENDING or DEFERRED; only they
//   are listed, filtered on and bounced.
//
// Pure functions of their arguments (the clock is passed in); thread-safe as
// far as the caller's protos are not shared.
#ifndef POSTERN_QUEUE_QUEUE_ADMIN_H_
#define POSTERN_QUEUE_QUEUE_ADMIN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/queue.pb.h"
#include "proto/queue_admin.pb.h"

namespace postern::queue {

// ListRequest.limit: 0 means kDefaultListLimit; larger than kMaxListLimit is
// cut to it (a page must fit one IPC frame and one gRPC message comfortably).
inline constexpr uint32_t kDefaultListLimit = 100;
inline constexpr uint32_t kMaxListLimit = 1000;
uint32_t EffectiveListLimit(uint32_t requested);

// The diagnostic and status a BOUNCE gives every recipient not yet final.
inline constexpr char kBounceStatus[] = "5.0.0";
inline constexpr char kBounceError[] = "bounced by the administrator";

// True for PENDING and DEFERRED.
bool IsPending(const v1::Recipient& recipient);

// The state shown for a message; `in_flight`: a delivery attempt is running.
v1::MessageState StateOf(const v1::Envelope& envelope, bool in_flight);

// Whether the message passes every criterion set in `filter` (all of them;
// unset ones pass):
// - sender: substring of the sender, ASCII case-insensitive;
// - recipient_domain: the domain of at least one recipient not yet final
//   equals it (case-insensitive); a leading dot (".example.com") also
//   matches every subdomain, and example.com itself;
// - state: StateOf() equals it;
// - min_age_seconds: now - arrival_time >= it.
bool Matches(const v1::Envelope& envelope, const v1::ListFilter& filter, absl::Time now,
             bool in_flight);

// One listing line. age is clamped at zero (clock steps); last_error is that
// of the first DEFERRED recipient, "" if none.
v1::MessageSummary Summarize(const v1::Envelope& envelope, absl::Time now, bool in_flight);

// Calls its argument for every envelope in id order and returns the first
// non-OK status the argument returned (SpoolStore::ForEachEnvelope).
using EnvelopeWalker =
    absl::FunctionRef<absl::Status(absl::FunctionRef<absl::Status(const v1::Envelope&)>)>;
using InFlightPredicate = absl::FunctionRef<bool(const std::string& queue_id)>;

// One page of the messages that match request.filter, in id order, starting
// after request.after_queue_id, at most EffectiveListLimit(request.limit).
// reply->next_after_queue_id is the last id of the page when at least one
// more match follows it, else "". Stops the walk as soon as that is known.
// Errors: those of `walk`; *reply is then unspecified.
absl::Status ListMessages(EnvelopeWalker walk, const v1::ListRequest& request, absl::Time now,
                          InFlightPredicate in_flight, v1::ListReply* reply);

// Merges the pages several workers returned for the same ListRequest (each
// in id order, each at most `limit` long) into one page of at most
// EffectiveListLimit(limit). The next page continues after its last id when
// any input page was cut or the merge left messages out; ids of one worker
// that the merged page did not reach are all greater than its last id, so
// nothing is skipped.
v1::ListReply MergeListPages(std::vector<v1::ListReply> pages, uint32_t limit);

// What an action does to one message.
struct ActionPlan {
  // The envelope to write back, or (with remove) the final state of the
  // message, which a bounce DSN is built from.
  v1::Envelope envelope;
  // Delete the envelope and body (DELETE, and BOUNCE once every recipient
  // is final).
  bool remove = false;
  // Indexes into envelope.recipients() the sender must get a failure DSN
  // for (BOUNCE). Whether one may be sent at all (NOTIFY, null sender,
  // is_dsn) is the DSN builder's decision.
  std::vector<int> bounce_recipients;
};

// Plans `action` on `current` (the envelope as spooled, not in delivery):
// - RETRY: due now (schedule.next_attempt = now). FailedPrecondition
//   "held; release it first" for a held message: a retry must not lift an
//   operator hold behind the operator's back.
// - HOLD: schedule.held = true (the store then drops its index key).
//   Holding a held message is a no-op that succeeds.
// - RELEASE: held = false and due now.
// - DELETE: remove, no notice.
// - BOUNCE: every recipient not yet final becomes FAILED with status
//   kBounceStatus, last_error kBounceError and final_time now; those are
//   bounce_recipients. Every recipient is then final, so remove is set.
// InvalidArgument for QUEUE_ACTION_UNSPECIFIED or an unknown value.
absl::StatusOr<ActionPlan> PlanAction(v1::QueueAction action, const v1::Envelope& current,
                                      absl::Time now);

// "retry", "hold", "release", "delete", "bounce"; "unspecified" otherwise.
const char* QueueActionName(v1::QueueAction action);

}  // namespace postern::queue

#endif  // POSTERN_QUEUE_QUEUE_ADMIN_H_
