// Scheduler: which spooled messages of one shard are due for delivery.
//
// The durable truth is the `schedule` index of the spool (FORMAT.md): one
// key per scheduled message, ordered by due time. The scheduler keeps in
// memory only the messages due before `loaded_until` (now + horizon), in a
// min-heap, and reads the index window after it as time moves on. So memory
// follows what is due soon, not the size of the backlog, and every scan is
// bounded on both sides: it never walks the tombstones that delivered mail
// leaves at the head of the index.
//
// Consistency with writes in flight: the loop decides every due time, so
// Schedule() puts a message in memory at once when its due time falls in
// the window already loaded; otherwise the index scan that later loads that
// window finds it. A scan runs only behind a SpoolWriter barrier, so every
// index write decided before the scan began is durable when it reads.
// BeginScan() advances loaded_until before the scan, so a due time decided
// while the scan is in flight is pushed to memory, never lost between the
// two. Stale heap entries (a message rescheduled, held, or delivered since)
// are dropped on the way out: the heap entry must match the latest due
// time recorded for the id, and the caller checks the envelope it reads.
//
// Threading: the worker's loop thread only. No I/O: the caller runs the
// scan (SpoolStore::ScanSchedule) and hands the result back.
#ifndef POSTERN_QUEUE_SCHEDULER_H_
#define POSTERN_QUEUE_SCHEDULER_H_

#include <cstddef>
#include <cstdint>
#include <queue>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "queue/spool_store.h"

namespace postern::queue {

struct SchedulerOptions {
  int64_t horizon_ms = 5 * 60 * 1000;  // how far ahead the heap is loaded
  int64_t rescan_ms = 10 * 1000;       // load more when this much is left
  size_t scan_limit = 20000;           // index keys per scan
};

class Scheduler {
 public:
  explicit Scheduler(SchedulerOptions options = {});

  // A message's new due time, decided by the loop (new mail, a deferral,
  // retry-now, release). Messages due beyond the loaded window wait for the
  // scan that reaches them.
  void Schedule(int64_t due_ms, const std::string& id);

  // The index window to read next, or false when the loaded window reaches
  // far enough (or a scan is already in flight). On true the caller submits
  // a SpoolWriter barrier, then scans [*from_ms, *to_ms) and calls ScanDone.
  bool BeginScan(int64_t now_ms, int64_t* from_ms, int64_t* to_ms);
  // `entries` from ScanSchedule(from, to, options.scan_limit); an empty
  // `ok == false` scan (read error) is retried by the next BeginScan.
  void ScanDone(const std::vector<ScheduleEntry>& entries, bool ok);

  // Up to `max` messages due at or before now_ms, earliest first. Each one
  // is now in flight: it is not handed out again until Finished(id).
  std::vector<ScheduleEntry> TakeDue(int64_t now_ms, size_t max);
  // The attempt of `id` is over and its new state is durable.
  void Finished(const std::string& id);
  // Forget any pending entry of `id` (held, deleted).
  void Cancel(const std::string& id);

  bool in_flight(const std::string& id) const { return in_flight_.count(id) != 0; }
  size_t in_flight_count() const { return in_flight_.size(); }
  size_t queued() const { return latest_.size(); }
  int64_t loaded_until() const { return loaded_until_; }
  // Earliest due time in memory, or -1 when nothing is loaded.
  int64_t NextDueMs();

 private:
  struct Later {
    bool operator()(const ScheduleEntry& a, const ScheduleEntry& b) const {
      return a.due_ms > b.due_ms;
    }
  };
  void Push(int64_t due_ms, const std::string& id);
  void DropStale();

  const SchedulerOptions options_;
  std::priority_queue<ScheduleEntry, std::vector<ScheduleEntry>, Later> heap_;
  std::unordered_map<std::string, int64_t> latest_;  // id -> due of its live heap entry
  std::unordered_set<std::string> in_flight_;
  int64_t loaded_until_ = 0;  // exclusive
  bool scan_in_flight_ = false;
  int64_t scan_from_ = 0;
  int64_t scan_to_ = 0;
};

}  // namespace postern::queue

#endif  // POSTERN_QUEUE_SCHEDULER_H_
