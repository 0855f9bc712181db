#include "queue/queue_manager.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "queue/queue_admin.h"

namespace postern::queue {
namespace {

int64_t ToMs(absl::Time t) { return absl::ToUnixMillis(t); }

// A next_attempt, kept to the whole millisecond: the unit of the spool's
// schedule index (SpoolStore::DueMs) and of the scheduler.
google::protobuf::Timestamp DueTimestamp(absl::Time when) {
  return ToProtoTimestamp(absl::FromUnixMillis(ToMs(when)));
}

std::string DomainOf(const std::string& address) {
  const size_t at = address.rfind('@');
  return absl::AsciiStrToLower(at == std::string::npos ? "" : address.substr(at + 1));
}

bool IsOpen(const v1::Recipient& r) {
  return r.state() == v1::RECIPIENT_STATE_PENDING || r.state() == v1::RECIPIENT_STATE_DEFERRED;
}

int64_t IndexedDueMs(const v1::Envelope& e) {
  return SpoolStore::IsScheduled(e) ? SpoolStore::DueMs(e) : -1;
}

}  // namespace

struct QueueManager::Attempt {
  std::shared_ptr<v1::Envelope> envelope;
  std::shared_ptr<const std::string> body;
  int64_t old_due_ms = -1;
  size_t jobs_left = 0;
  absl::Time started;
  // Per recipient index: the result of this attempt, if it was tried.
  std::map<int, AttemptResult> results;
};

// What a submitted write was for.
struct QueueManager::PendingWrite {
  enum Kind { kAttempt, kAction, kScan } kind = kAttempt;
  std::string queue_id;
  int64_t new_due_ms = -1;                                // -1: removed or not indexed
  std::vector<std::pair<std::string, int64_t>> inserted;  // DSN ids and due times
  GaugeState before;                                      // for the gauges
  bool removed = false;
  GaugeState after;
  // kAction: the shared reply being assembled.
  std::shared_ptr<v1::QueueReply> reply;
  std::shared_ptr<size_t> replies_left;
  std::function<void(v1::QueueReply)> reply_fn;
  int result_index = -1;
  // kAttempt: what was submitted, kept to submit again if the write fails.
  SpoolMutation mutation;
  std::vector<SpoolRecord> records;
};

QueueManager::QueueManager(SpoolStore* store, SpoolWriter* writer, DeliveryTransport* transport,
                           RetrySchedule schedule, QueueManagerOptions options,
                           std::function<absl::Time()> clock, std::function<std::string()> next_id,
                           QueueObserver* observer)
    : store_(store),
      writer_(writer),
      transport_(transport),
      schedule_(std::move(schedule)),
      options_(std::move(options)),
      clock_(std::move(clock)),
      next_id_(std::move(next_id)),
      observer_(observer),
      scheduler_(options_.scheduler),
      rng_(std::random_device{}()) {}

QueueManager::~QueueManager() = default;

absl::Status QueueManager::Recover() {
  if (absl::Status s = store_->CompactSchedule(); !s.ok()) return s;
  depth_ = deferred_ = held_ = 0;
  oldest_arrival_ = 0;
  return store_->ForEachEnvelope([this](const v1::Envelope& e) {
    CountState(e, +1);
    return absl::OkStatus();
  });
}

QueueManager::GaugeState QueueManager::GaugeStateOf(const v1::Envelope& e) {
  GaugeState s;
  s.held = e.schedule().held();
  s.deferred = std::any_of(e.recipients().begin(), e.recipients().end(),
                           [](const auto& r) { return r.state() == v1::RECIPIENT_STATE_DEFERRED; });
  s.arrival_s = e.arrival_time().seconds();
  return s;
}

void QueueManager::CountState(const GaugeState& s, int sign) {
  depth_ += sign;
  if (s.held) {
    held_ += sign;
  } else if (s.deferred) {
    deferred_ += sign;
  }
  // Ids are in arrival order, so the oldest only moves forward; recomputing
  // it exactly would need a walk. Keep the first seen and clear on empty.
  if (sign > 0 && (oldest_arrival_ == 0 || s.arrival_s < oldest_arrival_)) {
    oldest_arrival_ = s.arrival_s;
  }
  if (depth_ == 0) oldest_arrival_ = 0;
}

int64_t QueueManager::oldest_age_seconds() const {
  if (oldest_arrival_ == 0) return 0;
  return std::max<int64_t>(0, absl::ToUnixSeconds(clock_()) - oldest_arrival_);
}

void QueueManager::OnSpooled(SpoolRecord record) {
  const v1::Envelope& envelope = record.envelope;
  CountState(envelope, +1);
  if (!SpoolStore::IsScheduled(envelope)) return;
  const std::string& id = envelope.queue_id();
  const int64_t due_ms = SpoolStore::DueMs(envelope);
  scheduler_.Schedule(due_ms, id);
  const size_t bytes = record.body.size() + envelope.ByteSizeLong();
  const int64_t now_ms = ToMs(clock_());
  // Only mail that is about to be attempted is worth the memory.
  if (transport_ == nullptr || options_.hold || due_ms > now_ms + options_.fresh_max_age_ms ||
      fresh_bytes_ + bytes > options_.fresh_max_bytes) {
    return;
  }
  Fresh f;
  f.envelope = std::make_shared<v1::Envelope>(std::move(record.envelope));
  f.body = std::make_shared<const std::string>(std::move(record.body));
  f.bytes = bytes;
  const std::string& key = f.envelope->queue_id();
  fresh_order_.emplace_back(now_ms, key);
  fresh_bytes_ += bytes;
  fresh_.emplace(key, std::move(f));
}

std::optional<QueueManager::Fresh> QueueManager::TakeFresh(const std::string& queue_id) {
  auto it = fresh_.find(queue_id);
  if (it == fresh_.end()) return std::nullopt;
  Fresh f = std::move(it->second);
  fresh_.erase(it);
  fresh_bytes_ -= f.bytes;
  return f;
}

void QueueManager::ExpireFresh(int64_t now_ms) {
  // Ids are never reused, so an id at the front that is no longer kept was
  // taken; one that is still kept and too old is dropped.
  while (!fresh_order_.empty()) {
    const auto& [added_ms, id] = fresh_order_.front();
    if (fresh_.count(id) != 0) {
      if (now_ms - added_ms < options_.fresh_max_age_ms) break;
      TakeFresh(id);
    }
    fresh_order_.pop_front();
  }
}

void QueueManager::ClearFresh() {
  fresh_.clear();
  fresh_order_.clear();
  fresh_bytes_ = 0;
}

void QueueManager::set_hold(bool hold) {
  options_.hold = hold;
  if (hold) ClearFresh();
}

void QueueManager::Tick() {
  const int64_t now_ms = ToMs(clock_());
  if (!scan_waiting_ && scheduler_.BeginScan(now_ms, &scan_from_, &scan_to_)) {
    // Behind a barrier, so every index write decided so far is durable.
    scan_waiting_ = true;
    scan_token_ = next_token_++;
    auto w = std::make_unique<PendingWrite>();
    w->kind = PendingWrite::kScan;
    writes_.emplace(scan_token_, std::move(w));
    writer_->SubmitBarrier(scan_token_, this);
  }
  if (transport_ == nullptr) return;  // no outbound delivery in this build
  ExpireFresh(now_ms);
  RetryFailedWrites(now_ms);
  transport_->Tick(now_ms);
  if (options_.hold) return;
  const size_t room =
      attempts_.size() < options_.max_active ? options_.max_active - attempts_.size() : 0;
  for (const ScheduleEntry& e : scheduler_.TakeDue(now_ms, room)) StartAttempt(e);
}

bool QueueManager::LoadDue(const ScheduleEntry& entry, std::shared_ptr<v1::Envelope>* envelope,
                           std::shared_ptr<const std::string>* body) {
  // The fresh copy is what the spool holds unless an admin action or an
  // attempt rewrote it since, and both drop it first.
  if (std::optional<Fresh> f = TakeFresh(entry.queue_id);
      f && IndexedDueMs(*f->envelope) == entry.due_ms) {
    *envelope = std::move(f->envelope);
    *body = std::move(f->body);
    return true;
  }
  auto stored = store_->ReadEnvelope(entry.queue_id);
  // Gone (delivered, deleted) or changed since this entry was made (held,
  // rescheduled): the index already says where it belongs now.
  if (!stored.ok() || stored->schedule().held() || IndexedDueMs(*stored) != entry.due_ms) {
    scheduler_.Finished(entry.queue_id);
    if (stored.ok() && SpoolStore::IsScheduled(*stored)) {
      scheduler_.Schedule(SpoolStore::DueMs(*stored), entry.queue_id);
    }
    return false;
  }
  auto stored_body = store_->ReadBody(entry.queue_id);
  if (!stored_body.ok()) {
    // The index points at a message whose body cannot be read: a damaged
    // spool. Reported and left as it is on disk (an operator can show,
    // bounce or delete it); not tried again until the worker restarts.
    observer_->WriteFailed(entry.queue_id, stored_body.status());
    scheduler_.Finished(entry.queue_id);
    return false;
  }
  *envelope = std::make_shared<v1::Envelope>(std::move(*stored));
  *body = std::make_shared<const std::string>(std::move(*stored_body));
  return true;
}

void QueueManager::StartAttempt(const ScheduleEntry& entry) {
  auto attempt = std::make_unique<Attempt>();
  if (!LoadDue(entry, &attempt->envelope, &attempt->body)) return;
  attempt->old_due_ms = entry.due_ms;
  attempt->started = clock_();

  std::map<std::string, std::vector<int>> by_domain;
  const v1::Envelope& env = *attempt->envelope;
  for (int i = 0; i < env.recipients_size(); ++i) {
    if (IsOpen(env.recipients(i))) by_domain[DomainOf(env.recipients(i).address())].push_back(i);
  }
  Attempt& a = *attempt;
  attempts_[entry.queue_id] = std::move(attempt);
  if (by_domain.empty()) {
    FinishAttempt(a);
    return;
  }
  a.jobs_left = by_domain.size();
  for (auto& [domain, recipients] : by_domain) {
    DeliveryJob job;
    job.queue_id = entry.queue_id;
    job.domain = domain;
    job.envelope = a.envelope;
    job.body = a.body;
    job.recipients = std::move(recipients);
    const std::string id = entry.queue_id;
    DeliveryJob copy = job;
    transport_->Deliver(std::move(job), [this, id, copy](std::vector<AttemptResult> results) {
      JobDone(id, copy, std::move(results));
    });
  }
}

void QueueManager::JobDone(const std::string& queue_id, const DeliveryJob& job,
                           std::vector<AttemptResult> results) {
  auto it = attempts_.find(queue_id);
  if (it == attempts_.end()) return;
  Attempt& a = *it->second;
  for (size_t i = 0; i < job.recipients.size(); ++i) {
    AttemptResult r;
    if (i < results.size()) {
      r = std::move(results[i]);
    } else {
      r.kind = AttemptResult::kTemporary;
      r.reason = v1::DEFER_REASON_CONNECTION;
      r.status = "4.3.0";
      r.diagnostic = "internal error: no result for this recipient";
    }
    a.results[job.recipients[i]] = std::move(r);
  }
  if (--a.jobs_left == 0) FinishAttempt(a);
}

void QueueManager::FinishAttempt(Attempt& a) {
  const absl::Time now = clock_();
  v1::Envelope& env = *a.envelope;
  const GaugeState before = GaugeStateOf(env);
  const absl::Time arrival = FromProtoTimestamp(env.arrival_time());
  std::vector<int> failed;
  std::vector<int> relayed;
  for (auto& [index, result] : a.results) {
    v1::Recipient* r = env.mutable_recipients(index);
    const Decision d = ApplyAttempt(r, result, arrival, now, schedule_);
    if (d == Decision::kFailed) failed.push_back(index);
    if (d == Decision::kDelivered && result.relayed_without_dsn) relayed.push_back(index);
    observer_->RecipientDone(env, index, result, d);
  }
  env.mutable_schedule()->set_attempts(env.schedule().attempts() + 1);
  observer_->AttemptDone(env.queue_id(), now - a.started);

  std::vector<SpoolRecord> dsns;
  if (!failed.empty()) AddDsn(env, *a.body, DsnKind::kFailure, failed, &dsns);
  if (!relayed.empty()) AddDsn(env, *a.body, DsnKind::kRelayed, relayed, &dsns);
  std::vector<int> late = DueForDelayWarning(env, now, schedule_);
  if (!late.empty()) {
    AddDsn(env, *a.body, DsnKind::kDelay, late, &dsns);
    for (int i : late) env.mutable_recipients(i)->set_delay_notified(true);
  }

  PendingWrite w;
  w.kind = PendingWrite::kAttempt;
  w.queue_id = env.queue_id();
  w.before = before;
  SpoolMutation m;
  m.old_due_ms = a.old_due_ms;
  if (AllFinal(env)) {
    m.envelope.set_queue_id(env.queue_id());
    m.remove = true;
    w.removed = true;
  } else {
    *env.mutable_schedule()->mutable_next_attempt() =
        DueTimestamp(NextAttempt(env, now, schedule_, rng_));
    m.envelope = env;
    w.new_due_ms = IndexedDueMs(env);
    w.after = GaugeStateOf(env);
  }
  Submit(std::move(w), std::move(m), std::move(dsns));
}

void QueueManager::AddDsn(const v1::Envelope& envelope, const std::string& body, DsnKind kind,
                          const std::vector<int>& recipients, std::vector<SpoolRecord>* records) {
  DsnInput input;
  input.original = &envelope;
  input.original_body = body;
  input.kind = kind;
  input.recipients = RecipientsToNotify(envelope, input.kind, recipients);
  if (input.recipients.empty()) return;
  input.reporting_mta = options_.hostname;
  input.dsn_queue_id = next_id_();
  input.now = clock_();
  auto dsn = BuildDsn(input);
  if (!dsn.ok()) return;  // null sender, a DSN itself, nothing to report
  SpoolRecord record;
  record.envelope = std::move(dsn->envelope);
  record.envelope.set_shard(envelope.shard());
  *record.envelope.mutable_schedule()->mutable_next_attempt() = DueTimestamp(input.now);
  record.body = std::move(dsn->body);
  record.envelope.set_body_size(record.body.size());
  records->push_back(std::move(record));
}

void QueueManager::Submit(PendingWrite write, SpoolMutation mutation,
                          std::vector<SpoolRecord> records) {
  for (const SpoolRecord& r : records) {
    write.inserted.emplace_back(r.envelope.queue_id(), IndexedDueMs(r.envelope));
  }
  // The DSNs, for the observer once durable; for an attempt the whole write:
  // the delivery already happened, so a failed write is written again,
  // never attempted again.
  write.records = records;
  // An attempt's result need not wait for its own fsync: lost in a power
  // failure, it only repeats the attempt (and its notices), like a crash
  // during delivery. The next batch of new mail syncs it anyway.
  if (write.kind == PendingWrite::kAttempt) {
    mutation.sync = false;
    write.mutation = mutation;
  }
  const uint64_t token = next_token_++;
  writes_.emplace(token, std::make_unique<PendingWrite>(std::move(write)));
  writer_->SubmitMutation(token, std::move(mutation), std::move(records), this);
}

void QueueManager::RetryFailedWrites(int64_t now_ms) {
  for (auto it = failed_writes_.begin(); it != failed_writes_.end();) {
    if (it->first > now_ms) {
      ++it;
      continue;
    }
    std::unique_ptr<PendingWrite> w = std::move(it->second);
    it = failed_writes_.erase(it);
    const uint64_t token = next_token_++;
    SpoolMutation mutation = w->mutation;
    std::vector<SpoolRecord> records = w->records;
    writes_.emplace(token, std::move(w));
    writer_->SubmitMutation(token, std::move(mutation), std::move(records), this);
  }
}

void QueueManager::OnWriteDone(const SpoolCompletion& c) {
  auto it = writes_.find(c.token);
  if (it == writes_.end()) return;
  PendingWrite w = std::move(*it->second);
  writes_.erase(it);

  if (w.kind == PendingWrite::kScan) {
    scan_waiting_ = false;
    auto entries = store_->ScanSchedule(scan_from_, scan_to_, options_.scheduler.scan_limit);
    if (entries.ok()) {
      scheduler_.ScanDone(*entries, true);
    } else {
      scheduler_.ScanDone({}, false);
    }
    return;
  }

  if (!c.status.ok() && w.kind == PendingWrite::kAttempt) {
    // Not durable (disk full, I/O error): the message keeps its old state on
    // disk and stays in delivery here, and the same result is written again
    // in a second. Delivering it again would send it twice for every
    // failed write; a crash meanwhile does that once (at-least-once).
    observer_->WriteFailed(w.queue_id, c.status);
    failed_writes_.emplace_back(ToMs(clock_()) + 1000,
                                std::make_unique<PendingWrite>(std::move(w)));
    return;
  }
  if (w.kind == PendingWrite::kAttempt) {
    attempts_.erase(w.queue_id);
    scheduler_.Finished(w.queue_id);
  }
  if (!c.status.ok()) {
    observer_->WriteFailed(w.queue_id, c.status);
    if (w.reply) {
      auto* result = w.reply->mutable_action()->mutable_results(w.result_index);
      result->set_ok(false);
      result->set_error(std::string(c.status.message()));
    }
  } else {
    CountState(w.before, -1);
    if (!w.removed) CountState(w.after, +1);
    if (w.new_due_ms >= 0) scheduler_.Schedule(w.new_due_ms, w.queue_id);
    if (w.removed) scheduler_.Cancel(w.queue_id);
    for (const auto& [id, due] : w.inserted) {
      depth_ += 1;
      if (due >= 0) scheduler_.Schedule(due, id);
    }
    for (const SpoolRecord& r : w.records) observer_->DsnQueued(r.envelope, w.queue_id);
  }
  if (w.reply && --*w.replies_left == 0) w.reply_fn(std::move(*w.reply));
}

void QueueManager::HandleRequest(const v1::QueueRequest& request,
                                 std::function<void(v1::QueueReply)> reply) {
  const absl::Time now = clock_();
  v1::QueueReply out;
  auto in_flight = [this](const std::string& id) { return scheduler_.in_flight(id); };
  switch (request.request_case()) {
    case v1::QueueRequest::kList: {
      absl::Status s = ListMessages(
          [this](absl::FunctionRef<absl::Status(const v1::Envelope&)> fn) {
            return store_->ForEachEnvelope(fn);
          },
          request.list(), now, in_flight, out.mutable_list());
      if (!s.ok()) out.set_error(std::string(s.message()));
      reply(std::move(out));
      return;
    }
    case v1::QueueRequest::kShow: {
      auto env = store_->ReadEnvelope(request.show().queue_id());
      if (!env.ok()) {
        out.set_error(absl::IsNotFound(env.status()) ? "not found"
                                                     : std::string(env.status().message()));
      } else {
        out.mutable_show()->set_state(StateOf(*env, in_flight(env->queue_id())));
        *out.mutable_show()->mutable_envelope() = std::move(*env);
      }
      reply(std::move(out));
      return;
    }
    case v1::QueueRequest::kAction:
      HandleAction(request.action(), std::move(reply));
      return;
    case v1::QueueRequest::REQUEST_NOT_SET:
      break;
  }
  out.set_error("empty request");
  reply(std::move(out));
}

void QueueManager::HandleAction(const v1::ActionRequest& request,
                                std::function<void(v1::QueueReply)> reply) {
  const absl::Time now = clock_();
  auto shared = std::make_shared<v1::QueueReply>();
  auto left = std::make_shared<size_t>(1);  // one for this function, released at the end
  for (const std::string& id : request.queue_ids()) {
    v1::ActionResult* result = shared->mutable_action()->add_results();
    result->set_queue_id(id);
    TakeFresh(id);  // the action rewrites it; the next attempt reads the spool
    if (scheduler_.in_flight(id)) {
      result->set_error("in delivery, try again");
      continue;
    }
    auto env = store_->ReadEnvelope(id);
    if (!env.ok()) {
      result->set_error(absl::IsNotFound(env.status()) ? "not found"
                                                       : std::string(env.status().message()));
      continue;
    }
    auto plan = PlanAction(request.action(), *env, now);
    if (!plan.ok()) {
      result->set_error(std::string(plan.status().message()));
      continue;
    }
    PendingWrite w;
    w.kind = PendingWrite::kAction;
    w.queue_id = id;
    w.before = GaugeStateOf(*env);
    SpoolMutation m;
    m.old_due_ms = IndexedDueMs(*env);
    std::vector<SpoolRecord> dsns;
    if (!plan->bounce_recipients.empty()) {
      // The notice returns the content (or its headers) when it can be read.
      auto body = store_->ReadBody(id);
      AddDsn(plan->envelope, body.ok() ? *body : std::string(), DsnKind::kFailure,
             plan->bounce_recipients, &dsns);
    }
    if (plan->remove) {
      m.envelope.set_queue_id(id);
      m.remove = true;
      w.removed = true;
    } else {
      m.envelope = plan->envelope;
      w.after = GaugeStateOf(plan->envelope);
      w.new_due_ms = IndexedDueMs(plan->envelope);
    }
    if (request.action() == v1::QUEUE_ACTION_HOLD) scheduler_.Cancel(id);
    result->set_ok(true);
    w.reply = shared;
    w.replies_left = left;
    w.reply_fn = reply;
    w.result_index = shared->action().results_size() - 1;
    ++*left;
    Submit(std::move(w), std::move(m), std::move(dsns));
  }
  if (--*left == 0) reply(std::move(*shared));
}

}  // namespace postern::queue
