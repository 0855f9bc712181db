// SpoolWriter: group commit for one worker. The event loop hands finished
// messages to Submit(); one background thread writes everything pending into
// one synced SpoolStore::WriteBatch (one fsync for many messages) and posts a
// completion per message back to the loop. Only then may the loop answer 250.
//
// Completion path, built so the loop never blocks: the writer appends the
// completions of a batch to a mutex-protected vector, then adds 1 to an
// eventfd. The loop watches completion_eventfd() (an io_uring read or poll),
// and when it is readable reads the 8-byte counter and calls
// TakeCompletions(). Read the counter before taking: a batch posted between
// the two re-arms the eventfd, so at worst the loop wakes once for nothing;
// no completion is ever left behind unsignalled.
//
// Batching: a batch is whatever is pending when the thread is free, so
// messages submitted while an fsync is in flight share the next one. No
// timer, no added latency at low load. A batch stops growing at
// max_batch_bytes (at least one message is always taken), which bounds the
// memory of one WriteBatch; messages past the bound wait for the next batch.
//
// Locks: Submit(), TakeCompletions() and pending_bytes() take a mutex that the
// writer thread only holds to move items in or out of a vector, never across
// disk I/O, so the loop waits at most for a few moves.
//
// Threading and lifetime: the owner (the worker's event loop thread) calls
// every method. `store` is borrowed and must outlive the writer. Stop() (or
// the destructor) writes everything already submitted, posts its completions,
// and joins the thread; afterwards Submit() completes at once with
// kFailedPrecondition. Every submitted token gets exactly one completion.
#ifndef POSTERN_QUEUE_SPOOL_WRITER_H_
#define POSTERN_QUEUE_SPOOL_WRITER_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "queue/spool_store.h"

namespace postern::queue {

struct SpoolCompletion;

// Who submitted a write. Each client gets its own completions back
// (SpoolCompletion::client), so clients need not share one token space.
class SpoolClient {
 public:
  virtual ~SpoolClient() = default;
  virtual void OnSpoolCompletion(SpoolCompletion completion) = 0;
};

struct SpoolCompletion {
  SpoolClient* client = nullptr;  // as given to Submit(); the owner routes by it
  uint64_t token = 0;             // as given to Submit()
  absl::Status status;            // OK: durable, answer 250; else answer 452
  uint32_t batch_size = 0;        // new messages that shared this item's fsync
  absl::Duration latency;         // Submit() to durable (or failed), monotonic clock
  // For Submit(): the record, handed back whatever the outcome, so the
  // owner needs no copy of it while the write is in flight and can deliver
  // fresh mail without reading it back from the store. Empty for mutations
  // and barriers.
  SpoolRecord record;
};

struct SpoolWriterOptions {
  // Upper bound of the payload (bodies + envelopes) of one WriteBatch.
  size_t max_batch_bytes = 64ull << 20;
};

class SpoolWriter {
 public:
  // Starts the writer thread. Aborts the process if no eventfd can be made
  // (out of file descriptors at start-up: the worker cannot run anyway).
  explicit SpoolWriter(SpoolStore* store, SpoolWriterOptions options = {});
  ~SpoolWriter();  // Stop()
  SpoolWriter(const SpoolWriter&) = delete;
  SpoolWriter& operator=(const SpoolWriter&) = delete;

  // Queues `record` for the next batch. Never waits for disk. `token` is the
  // caller's handle (e.g. a connection id) and comes back in the completion.
  // A record that fails SpoolStore::ValidateRecord completes at once with
  // kInvalidArgument (batch_size 0) and never reaches a batch.
  // `client` comes back in the completion for the owner to route it.
  void Submit(uint64_t token, SpoolRecord record, SpoolClient* client = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_, done_mu_);

  // Queues a change to a spooled message (delivery results, schedule,
  // removal) for the next batch, together with `records` to insert in the
  // same batch (the DSNs the change owes): all of it or none is written. It
  // shares the batch's fsync with new messages. Completes like Submit(),
  // except that a mutation with sync == false is written but durable only
  // with the next synced batch (SpoolMutation::sync).
  void SubmitMutation(uint64_t token, SpoolMutation mutation, std::vector<SpoolRecord> records = {},
                      SpoolClient* client = nullptr) ABSL_LOCKS_EXCLUDED(mu_, done_mu_);

  // Completes (OK) once everything submitted before it is written (readable;
  // durable as far as each item asked): the scheduler reads the index only
  // behind a barrier, so no write it decided on earlier is still in flight
  // when it scans.
  void SubmitBarrier(uint64_t token, SpoolClient* client = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_, done_mu_);

  // Nonblocking eventfd, readable when completions are waiting. Owned by the
  // writer; valid until it is destroyed.
  int completion_eventfd() const { return event_fd_; }

  // Every completion posted so far, in batch order.
  std::vector<SpoolCompletion> TakeCompletions() ABSL_LOCKS_EXCLUDED(done_mu_);

  // Bytes submitted and not yet durable: the owner can push back (stop
  // reading DATA, or answer 452) when the disk falls behind.
  size_t pending_bytes() const { return pending_bytes_.load(std::memory_order_relaxed); }

  // Writes what is pending, posts its completions, joins the thread.
  // Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Pending {
    SpoolClient* client;
    uint64_t token;
    enum Kind { kRecord, kMutation, kBarrier } kind;
    SpoolRecord record;
    SpoolMutation mutation;
    size_t bytes;
    std::chrono::steady_clock::time_point submitted;
    std::vector<SpoolRecord> records;  // inserted with `mutation`
  };

  void Enqueue(Pending item) ABSL_LOCKS_EXCLUDED(mu_, done_mu_);
  // Completes `token` at once with `status` (batch_size 0), handing back
  // `record` if it was a Submit().
  void Refuse(SpoolClient* client, uint64_t token, absl::Status status, SpoolRecord record = {})
      ABSL_LOCKS_EXCLUDED(done_mu_);
  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  void Post(std::vector<SpoolCompletion> completions) ABSL_LOCKS_EXCLUDED(done_mu_);

  SpoolStore* const store_;
  const SpoolWriterOptions options_;
  int event_fd_ = -1;
  std::atomic<size_t> pending_bytes_{0};

  absl::Mutex mu_;  // the inbox
  std::deque<Pending> pending_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  absl::Mutex done_mu_;  // the outbox
  std::vector<SpoolCompletion> done_ ABSL_GUARDED_BY(done_mu_);

  std::thread thread_;
};

}  // namespace postern::queue

#endif  // POSTERN_QUEUE_SPOOL_WRITER_H_
