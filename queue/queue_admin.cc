#include "queue/queue_admin.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/proto_time.h"

namespace postern::queue {
namespace {

int64_t AgeSeconds(const v1::Envelope& envelope, absl::Time now) {
  return std::max<int64_t>(0,
                           absl::ToInt64Seconds(now - FromProtoTimestamp(envelope.arrival_time())));
}

// The part after the last '@'; "" for an address without one.
absl::string_view DomainOf(absl::string_view address) {
  size_t at = address.rfind('@');
  return at == absl::string_view::npos ? absl::string_view() : address.substr(at + 1);
}

// Old absl (Debian 12) has no StrContainsIgnoreCase.
bool ContainsIgnoreCase(absl::string_view haystack, absl::string_view needle) {
  return absl::StrContains(absl::AsciiStrToLower(haystack), absl::AsciiStrToLower(needle));
}

bool DomainMatches(absl::string_view domain, absl::string_view wanted) {
  if (domain.empty()) return false;
  if (!wanted.empty() && wanted.front() == '.') {
    absl::string_view bare = wanted.substr(1);
    return absl::EqualsIgnoreCase(domain, bare) || absl::EndsWithIgnoreCase(domain, wanted);
  }
  return absl::EqualsIgnoreCase(domain, wanted);
}

}  // namespace

uint32_t EffectiveListLimit(uint32_t requested) {
  if (requested == 0) return kDefaultListLimit;
  return std::min(requested, kMaxListLimit);
}

bool IsPending(const v1::Recipient& recipient) {
  return recipient.state() == v1::RECIPIENT_STATE_PENDING ||
         recipient.state() == v1::RECIPIENT_STATE_DEFERRED;
}

v1::MessageState StateOf(const v1::Envelope& envelope, bool in_flight) {
  if (envelope.schedule().held()) return v1::MESSAGE_STATE_HELD;
  // A message in delivery is active even if it was deferred before, as in
  // Postfix's active queue.
  if (in_flight) return v1::MESSAGE_STATE_ACTIVE;
  for (const auto& r : envelope.recipients()) {
    if (r.state() == v1::RECIPIENT_STATE_DEFERRED) return v1::MESSAGE_STATE_DEFERRED;
  }
  return v1::MESSAGE_STATE_ACTIVE;
}

bool Matches(const v1::Envelope& envelope, const v1::ListFilter& filter, absl::Time now,
             bool in_flight) {
  if (!filter.sender().empty() && !ContainsIgnoreCase(envelope.sender(), filter.sender())) {
    return false;
  }
  if (!filter.recipient_domain().empty()) {
    bool any = false;
    for (const auto& r : envelope.recipients()) {
      if (IsPending(r) && DomainMatches(DomainOf(r.address()), filter.recipient_domain())) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  if (filter.state() != v1::MESSAGE_STATE_UNSPECIFIED &&
      StateOf(envelope, in_flight) != filter.state()) {
    return false;
  }
  if (filter.min_age_seconds() > 0 &&
      static_cast<uint64_t>(AgeSeconds(envelope, now)) < filter.min_age_seconds()) {
    return false;
  }
  return true;
}

v1::MessageSummary Summarize(const v1::Envelope& envelope, absl::Time now, bool in_flight) {
  v1::MessageSummary s;
  s.set_queue_id(envelope.queue_id());
  s.set_shard(envelope.shard());
  s.set_sender(envelope.sender());
  bool have_error = false;
  for (const auto& r : envelope.recipients()) {
    if (!IsPending(r)) continue;
    s.add_recipients(r.address());
    if (!have_error && r.state() == v1::RECIPIENT_STATE_DEFERRED) {
      s.set_last_error(r.last_error());
      have_error = true;
    }
  }
  s.set_state(StateOf(envelope, in_flight));
  s.set_size(envelope.body_size());
  s.set_age_seconds(static_cast<uint64_t>(AgeSeconds(envelope, now)));
  s.set_attempts(envelope.schedule().attempts());
  return s;
}

absl::Status ListMessages(EnvelopeWalker walk, const v1::ListRequest& request, absl::Time now,
                          InFlightPredicate in_flight, v1::ListReply* reply) {
  reply->Clear();
  const size_t limit = EffectiveListLimit(request.limit());
  const std::string& after = request.after_queue_id();
  // Set when one match past the page is found; the walk is cut short with a
  // status only this function produces, recognised by the flag, not the text.
  bool more = false;
  absl::Status s = walk([&](const v1::Envelope& envelope) -> absl::Status {
    if (!after.empty() && envelope.queue_id() <= after) return absl::OkStatus();
    const bool busy = in_flight(envelope.queue_id());
    if (!Matches(envelope, request.filter(), now, busy)) return absl::OkStatus();
    if (static_cast<size_t>(reply->messages_size()) == limit) {
      more = true;
      return absl::CancelledError("page full");
    }
    *reply->add_messages() = Summarize(envelope, now, busy);
    return absl::OkStatus();
  });
  if (more) {
    reply->set_next_after_queue_id(reply->messages(reply->messages_size() - 1).queue_id());
    return absl::OkStatus();
  }
  return s;
}

v1::ListReply MergeListPages(std::vector<v1::ListReply> pages, uint32_t limit) {
  const size_t max = EffectiveListLimit(limit);
  bool cut = false;
  std::vector<v1::MessageSummary> all;
  for (auto& page : pages) {
    cut |= !page.next_after_queue_id().empty();
    for (auto& m : *page.mutable_messages()) all.push_back(std::move(m));
  }
  std::sort(all.begin(), all.end(), [](const v1::MessageSummary& a, const v1::MessageSummary& b) {
    return a.queue_id() < b.queue_id();
  });
  v1::ListReply out;
  if (all.size() > max) {
    cut = true;
    all.resize(max);
  }
  for (auto& m : all) *out.add_messages() = std::move(m);
  if (cut && out.messages_size() > 0) {
    out.set_next_after_queue_id(out.messages(out.messages_size() - 1).queue_id());
  }
  return out;
}

absl::StatusOr<ActionPlan> PlanAction(v1::QueueAction action, const v1::Envelope& current,
                                      absl::Time now) {
  ActionPlan plan;
  plan.envelope = current;
  v1::Schedule* schedule = plan.envelope.mutable_schedule();
  switch (action) {
    case v1::QUEUE_ACTION_RETRY:
      if (current.schedule().held()) {
        return absl::FailedPreconditionError("held; release it first");
      }
      *schedule->mutable_next_attempt() = ToProtoTimestamp(now);
      return plan;
    case v1::QUEUE_ACTION_HOLD:
      schedule->set_held(true);
      return plan;
    case v1::QUEUE_ACTION_RELEASE:
      schedule->set_held(false);
      *schedule->mutable_next_attempt() = ToProtoTimestamp(now);
      return plan;
    case v1::QUEUE_ACTION_DELETE:
      plan.remove = true;
      return plan;
    case v1::QUEUE_ACTION_BOUNCE:
      for (int i = 0; i < plan.envelope.recipients_size(); ++i) {
        v1::Recipient* r = plan.envelope.mutable_recipients(i);
        if (!IsPending(*r)) continue;
        r->set_state(v1::RECIPIENT_STATE_FAILED);
        r->set_status(kBounceStatus);
        r->set_last_error(kBounceError);
        *r->mutable_final_time() = ToProtoTimestamp(now);
        plan.bounce_recipients.push_back(i);
      }
      plan.remove = true;
      return plan;
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown queue action ", static_cast<int>(action)));
}

const char* QueueActionName(v1::QueueAction action) {
  switch (action) {
    case v1::QUEUE_ACTION_RETRY:
      return "retry";
    case v1::QUEUE_ACTION_HOLD:
      return "hold";
    case v1::QUEUE_ACTION_RELEASE:
      return "release";
    case v1::QUEUE_ACTION_DELETE:
      return "delete";
    case v1::QUEUE_ACTION_BOUNCE:
      return "bounce";
    default:
      return "unspecified";
  }
}

}  // namespace postern::queue
