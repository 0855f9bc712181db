#include "queue/scheduler.h"

#include <algorithm>

namespace postern::queue {

Scheduler::Scheduler(SchedulerOptions options) : options_(options) {}

void Scheduler::Push(int64_t due_ms, const std::string& id) {
  if (in_flight_.count(id) != 0) return;  // its attempt will reschedule it
  auto [it, inserted] = latest_.try_emplace(id, due_ms);
  if (!inserted) {
    if (it->second == due_ms) return;  // already there (pushed, then scanned)
    it->second = due_ms;               // the older heap entry becomes stale
  }
  heap_.push(ScheduleEntry{due_ms, id});
}

void Scheduler::Schedule(int64_t due_ms, const std::string& id) {
  if (due_ms < loaded_until_) {
    Push(due_ms, id);
  } else {
    // Beyond the window: a pending entry for an earlier time is stale now.
    latest_.erase(id);
  }
}

bool Scheduler::BeginScan(int64_t now_ms, int64_t* from_ms, int64_t* to_ms) {
  if (scan_in_flight_ || loaded_until_ - now_ms > options_.rescan_ms) return false;
  scan_from_ = loaded_until_;
  scan_to_ = now_ms + options_.horizon_ms;
  loaded_until_ = scan_to_;
  scan_in_flight_ = true;
  *from_ms = scan_from_;
  *to_ms = scan_to_;
  return true;
}

void Scheduler::ScanDone(const std::vector<ScheduleEntry>& entries, bool ok) {
  scan_in_flight_ = false;
  if (!ok) {
    loaded_until_ = std::min(loaded_until_, scan_from_);
    return;
  }
  for (const ScheduleEntry& e : entries) Push(e.due_ms, e.queue_id);
  if (entries.size() >= options_.scan_limit && !entries.empty()) {
    // Truncated: read on from the last key's time next round. Keys of that
    // same millisecond come again; Push() ignores those already held.
    loaded_until_ = std::min(loaded_until_, entries.back().due_ms);
  }
}

void Scheduler::DropStale() {
  while (!heap_.empty()) {
    const ScheduleEntry& top = heap_.top();
    auto it = latest_.find(top.queue_id);
    if (it != latest_.end() && it->second == top.due_ms) return;
    heap_.pop();
  }
}

int64_t Scheduler::NextDueMs() {
  DropStale();
  return heap_.empty() ? -1 : heap_.top().due_ms;
}

std::vector<ScheduleEntry> Scheduler::TakeDue(int64_t now_ms, size_t max) {
  std::vector<ScheduleEntry> due;
  while (due.size() < max) {
    DropStale();
    if (heap_.empty() || heap_.top().due_ms > now_ms) break;
    ScheduleEntry e = heap_.top();
    heap_.pop();
    latest_.erase(e.queue_id);
    in_flight_.insert(e.queue_id);
    due.push_back(std::move(e));
  }
  return due;
}

void Scheduler::Finished(const std::string& id) { in_flight_.erase(id); }

void Scheduler::Cancel(const std::string& id) { latest_.erase(id); }

}  // namespace postern::queue
