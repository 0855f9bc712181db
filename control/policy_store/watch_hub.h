// WatchHub: the watches of one policy store and the thread that feeds them.
//
// Each watch has a cursor, the next revision it is owed. One thread serves
// every watch whose cursor is at or below the last committed revision: it
// reads the revisions it is owed (from a cache of the latest revisions, or
// from the store's log), calls the callback for each revision with events
// the watch selects, and moves the cursor on. History and live events take
// the same path, so each revision is delivered exactly once and in order,
// however a watch's start races with commits. A watch that falls behind a
// compaction ends with a kOutOfRange response.
//
// Threading: thread-safe. Callbacks run on the hub's thread, one at a time,
// with no lock of the hub or the store held: they may call the store
// (Range, Txn, CancelWatch). A slow callback delays other watches, never a
// commit. Publish() only queues. A callback must not destroy the hub.
#ifndef POSTERN_CONTROL_POLICY_STORE_WATCH_HUB_H_
#define POSTERN_CONTROL_POLICY_STORE_WATCH_HUB_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "control/policy_store/policy_store.h"
#include "proto/policy_store.pb.h"

namespace postern::control {

class WatchHub {
 public:
  using Record = std::shared_ptr<const v1::RevisionRecord>;
  // Reads the log records of every revision in [from, to], in order; fails
  // with kOutOfRange when `from` is compacted and kDataLoss on a hole.
  using LogReader = std::function<absl::StatusOr<std::vector<Record>>(int64_t from, int64_t to)>;

  // Keeps the latest `cache_revisions` records in memory for live watches.
  WatchHub(LogReader reader, size_t cache_revisions);
  ~WatchHub();  // Stop()
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // The store's revisions, at open and after it reopened its database:
  // forgets the cache (the log is the truth again).
  void Reset(int64_t committed, int64_t compacted) ABSL_LOCKS_EXCLUDED(mu_);
  // A revision that is now durable; revisions come in order.
  void Publish(Record record) ABSL_LOCKS_EXCLUDED(mu_);
  void SetCompacted(int64_t revision) ABSL_LOCKS_EXCLUDED(mu_);

  // PolicyStore::Watch and CancelWatch.
  absl::StatusOr<WatchId> Add(KeySelector keys, int64_t after_revision, WatchCallback callback)
      ABSL_LOCKS_EXCLUDED(mu_);
  void Cancel(WatchId id) ABSL_LOCKS_EXCLUDED(mu_);

  // Ends the thread; no callback runs after it returns. Not from a callback.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  size_t watch_count() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Watcher {
    WatchId id = 0;
    KeySelector keys;
    WatchCallback callback;
    int64_t next = 1;  // guarded by the hub's mu_
  };

  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Serves up to one chunk of revisions to `watcher`, up to `committed`.
  void Serve(const std::shared_ptr<Watcher>& watcher, int64_t committed) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::vector<Record>> Fetch(int64_t from, int64_t to) ABSL_LOCKS_EXCLUDED(mu_);
  // Calls the callback unless the watch was cancelled; false if it was.
  // `last` removes the watch first.
  bool Deliver(const Watcher& watcher, const WatchResponse& response, bool last)
      ABSL_LOCKS_EXCLUDED(mu_);

  const LogReader reader_;
  const size_t cache_revisions_;

  mutable absl::Mutex mu_;
  std::map<WatchId, std::shared_ptr<Watcher>> watchers_ ABSL_GUARDED_BY(mu_);
  WatchId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t committed_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t compacted_ ABSL_GUARDED_BY(mu_) = 0;
  // The latest committed records, contiguous, ending at committed_.
  std::deque<Record> cache_ ABSL_GUARDED_BY(mu_);
  WatchId delivering_ ABSL_GUARDED_BY(mu_) = 0;  // whose callback runs now
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
  std::thread::id thread_id_;  // set before the thread runs any callback
};

}  // namespace postern::control

#endif  // POSTERN_CONTROL_POLICY_STORE_WATCH_HUB_H_
