#include "control/policy_store/watch_hub.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace postern::control {
namespace {

// Revisions served to one watch before the others get their turn.
constexpr int64_t kChunk = 256;

absl::Status Compacted(int64_t revision, int64_t compacted) {
  return absl::OutOfRangeError(absl::StrCat("policy store: revision ", revision,
                                            " has been compacted (compact revision ", compacted,
                                            ")"));
}

}  // namespace

WatchHub::WatchHub(LogReader reader, size_t cache_revisions)
    : reader_(std::move(reader)), cache_revisions_(std::max<size_t>(cache_revisions, 1)) {
  thread_ = std::thread([this] { Run(); });
  thread_id_ = thread_.get_id();
}

WatchHub::~WatchHub() { Stop(); }

void WatchHub::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void WatchHub::Reset(int64_t committed, int64_t compacted) {
  absl::MutexLock lock(&mu_);
  cache_.clear();
  committed_ = committed;
  compacted_ = compacted;
}

void WatchHub::Publish(Record record) {
  absl::MutexLock lock(&mu_);
  if (record->revision() != committed_ + 1) cache_.clear();  // not contiguous: read the log
  committed_ = record->revision();
  cache_.push_back(std::move(record));
  while (cache_.size() > cache_revisions_) cache_.pop_front();
}

void WatchHub::SetCompacted(int64_t revision) {
  absl::MutexLock lock(&mu_);
  compacted_ = std::max(compacted_, revision);
  while (!cache_.empty() && cache_.front()->revision() <= compacted_) cache_.pop_front();
}

absl::StatusOr<WatchId> WatchHub::Add(KeySelector keys, int64_t after_revision,
                                      WatchCallback callback) {
  if (after_revision < 0) {
    return absl::InvalidArgumentError("policy store: watch from a negative revision");
  }
  if (!callback) return absl::InvalidArgumentError("policy store: watch without a callback");
  absl::MutexLock lock(&mu_);
  if (stop_) return absl::FailedPreconditionError("policy store: closing");
  if (after_revision < compacted_) return Compacted(after_revision, compacted_);
  auto watcher = std::make_shared<Watcher>();
  watcher->id = next_id_++;
  watcher->keys = std::move(keys);
  watcher->callback = std::move(callback);
  watcher->next = after_revision + 1;
  watchers_.emplace(watcher->id, watcher);
  return watcher->id;
}

void WatchHub::Cancel(WatchId id) {
  absl::MutexLock lock(&mu_);
  watchers_.erase(id);
  if (std::this_thread::get_id() == thread_id_) return;  // from its own callback
  auto done = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return delivering_ != id; };
  mu_.Await(absl::Condition(&done));
}

size_t WatchHub::watch_count() const {
  absl::MutexLock lock(&mu_);
  return watchers_.size();
}

bool WatchHub::HasWork() const {
  if (stop_) return true;
  for (const auto& [id, watcher] : watchers_) {
    if (watcher->next <= committed_) return true;
  }
  return false;
}

void WatchHub::Run() {
  for (;;) {
    std::vector<std::shared_ptr<Watcher>> due;
    int64_t committed = 0;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &WatchHub::HasWork));
      if (stop_) return;
      committed = committed_;
      for (const auto& [id, watcher] : watchers_) {
        if (watcher->next <= committed) due.push_back(watcher);
      }
    }
    for (const auto& watcher : due) Serve(watcher, committed);
  }
}

void WatchHub::Serve(const std::shared_ptr<Watcher>& watcher, int64_t committed) {
  int64_t from = 0;
  {
    absl::MutexLock lock(&mu_);
    if (stop_ || watchers_.count(watcher->id) == 0) return;
    from = watcher->next;
  }
  if (from > committed) return;
  const int64_t to = std::min(committed, from + kChunk - 1);
  absl::StatusOr<std::vector<Record>> records = Fetch(from, to);
  if (!records.ok()) {
    WatchResponse end;
    end.revision = from;
    end.status = records.status();
    Deliver(*watcher, end, /*last=*/true);
    return;
  }
  for (const Record& record : *records) {
    WatchResponse response;
    response.revision = record->revision();
    for (const v1::Event& event : record->events()) {
      if (watcher->keys.Matches(event.kv().key())) response.events.push_back(event);
    }
    if (!response.events.empty() && !Deliver(*watcher, response, /*last=*/false)) return;
    absl::MutexLock lock(&mu_);
    watcher->next = record->revision() + 1;
  }
}

absl::StatusOr<std::vector<WatchHub::Record>> WatchHub::Fetch(int64_t from, int64_t to) {
  {
    absl::MutexLock lock(&mu_);
    if (from <= compacted_) return Compacted(from - 1, compacted_);
    if (!cache_.empty() && from >= cache_.front()->revision() && to <= cache_.back()->revision()) {
      const size_t first = static_cast<size_t>(from - cache_.front()->revision());
      const size_t count = static_cast<size_t>(to - from + 1);
      return std::vector<Record>(cache_.begin() + first, cache_.begin() + first + count);
    }
  }
  absl::StatusOr<std::vector<Record>> records = reader_(from, to);
  if (!records.ok()) return records.status();
  // The reader promises contiguous records; check rather than skip a hole.
  for (size_t i = 0; i < records->size(); ++i) {
    if ((*records)[i]->revision() != from + static_cast<int64_t>(i)) {
      return absl::DataLossError(
          absl::StrCat("policy store: revision log has a hole at revision ", from + i));
    }
  }
  if (records->size() != static_cast<size_t>(to - from + 1)) {
    return absl::DataLossError(absl::StrCat("policy store: revision log ends before revision ", to,
                                            " (watch at ", from, ")"));
  }
  return records;
}

bool WatchHub::Deliver(const Watcher& watcher, const WatchResponse& response, bool last) {
  {
    absl::MutexLock lock(&mu_);
    if (stop_ || watchers_.count(watcher.id) == 0) return false;
    if (last) watchers_.erase(watcher.id);
    delivering_ = watcher.id;
  }
  watcher.callback(response);
  absl::MutexLock lock(&mu_);
  delivering_ = 0;
  return true;
}

}  // namespace postern::control
