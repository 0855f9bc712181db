// QueueManager: the delivery side of one shard's queue. It takes due
// messages from the Scheduler, splits each into one job per destination
// domain for the DeliveryTransport, turns the per-recipient results into
// decisions (recipient_outcome.h), and writes the new state back through the
// SpoolWriter in the same group commit as the notices it owes: a message
// whose recipients are all final is removed together with the insertion of
// its DSN, so a crash can duplicate a notice but never lose one.
//
// Strategy, in Postfix's words:
// - Messages are attempted in due order; at most max_active messages are in
//   delivery at once, the rest wait in the index (no memory per backlog
//   message beyond the scheduler's window).
// - One attempt of a message tries every pending recipient; each destination
//   domain is a separate job, so a dead or TLS-less destination defers only
//   its own recipients ("mixed recipients follow their own policy").
// - After an attempt the message is due again at NextAttempt() (the retry
//   schedule with jitter, clamped to the next expiry deadline).
// - Failed recipients are reported in one failure DSN per attempt; delay
//   warnings go out once per recipient after delivery.delay_warning.
//
// Queue administration (queue_admin.proto) is served here too, because only
// the loop that owns the scheduler knows which messages are in delivery.
//
// Threading: the worker's loop thread, like everything it borrows. The spool
// reads it does (envelope and body of a retried message, index scans,
// listing) block on RocksDB; fresh mail needs none (OnSpooled keeps it), but
// a cold read of a large body for a retry stalls the loop for one disk
// read. Moving them to the writer thread is the known next step.
#ifndef POSTERN_QUEUE_QUEUE_MANAGER_H_
#define POSTERN_QUEUE_QUEUE_MANAGER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "proto/queue.pb.h"
#include "proto/queue_admin.pb.h"
#include "queue/delivery_transport.h"
#include "queue/dsn_builder.h"
#include "queue/retry_schedule.h"
#include "queue/scheduler.h"
#include "queue/spool_store.h"
#include "queue/spool_writer.h"

namespace postern::queue {

// What the manager reports for logs and metrics.
class QueueObserver {
 public:
  virtual ~QueueObserver() = default;
  virtual void RecipientDone(const v1::Envelope& envelope, int recipient, const AttemptResult& r,
                             Decision decision) {}
  virtual void DsnQueued(const v1::Envelope& dsn, const std::string& original_id) {}
  virtual void AttemptDone(const std::string& queue_id, absl::Duration took) {}
  virtual void WriteFailed(const std::string& queue_id, const absl::Status& status) {}
};

struct QueueManagerOptions {
  std::string hostname;  // Reporting-MTA of DSNs
  bool hold = false;     // delivery.hold: nothing is attempted
  size_t max_active = 1000;
  // Fresh mail kept in memory from OnSpooled() to its first attempt, so
  // delivery does not read back what the loop had a moment ago. Bounded in
  // bytes and age; past either bound the attempt reads the spool instead.
  size_t fresh_max_bytes = 64ull << 20;
  int64_t fresh_max_age_ms = 10'000;
  SchedulerOptions scheduler;
};

// Submits its writes as a SpoolClient of its own: the owner of the writer
// routes completions whose client is the manager back to it.
class QueueManager : public SpoolClient {
 public:
  // Everything borrowed must outlive the manager. `clock` gives wall-clock
  // time (tests inject one); `next_id` issues queue ids for DSNs.
  // `transport` may be null: then nothing is attempted (as with hold).
  QueueManager(SpoolStore* store, SpoolWriter* writer, DeliveryTransport* transport,
               RetrySchedule schedule, QueueManagerOptions options,
               std::function<absl::Time()> clock, std::function<std::string()> next_id,
               QueueObserver* observer);

  ~QueueManager() override;
  QueueManager(const QueueManager&) = delete;
  QueueManager& operator=(const QueueManager&) = delete;

  // Start-up: compacts the index (the previous run's tombstones) and counts
  // what the spool holds.
  absl::Status Recover();

  // A new message is durable (its index key was written with it). The
  // record is what was written (SpoolCompletion::record); the manager may
  // keep it for the first attempt.
  void OnSpooled(SpoolRecord record);

  // Periodic work: index scans, starting due attempts.
  void Tick();

  // A completion of one of the manager's writes.
  void OnWriteDone(const SpoolCompletion& completion);
  void OnSpoolCompletion(SpoolCompletion completion) override { OnWriteDone(completion); }

  // Queue administration. List and show answer at once; actions answer
  // through `reply` once their writes are durable.
  void HandleRequest(const v1::QueueRequest& request, std::function<void(v1::QueueReply)> reply);

  void set_hold(bool hold);
  void set_schedule(RetrySchedule schedule) { schedule_ = std::move(schedule); }

  // Gauges (messages in the queue, deferred, held, age of the oldest).
  uint64_t depth() const { return depth_; }
  uint64_t deferred() const { return deferred_; }
  uint64_t held() const { return held_; }
  int64_t oldest_age_seconds() const;
  size_t active() const { return attempts_.size(); }
  // Messages kept in memory for their first attempt, and their bytes.
  size_t fresh_messages() const { return fresh_.size(); }
  size_t fresh_bytes() const { return fresh_bytes_; }
  // Writes submitted and not completed yet (tests wait for them).
  size_t writes_in_flight() const { return writes_.size(); }

 private:
  struct Attempt;
  struct PendingWrite;

  // A message spooled by OnSpooled() and not yet attempted.
  struct Fresh {
    std::shared_ptr<v1::Envelope> envelope;
    std::shared_ptr<const std::string> body;
    size_t bytes = 0;
  };
  // Removes and returns the fresh copy of `queue_id`, if one is kept.
  std::optional<Fresh> TakeFresh(const std::string& queue_id);
  // Drops fresh copies older than fresh_max_age_ms (their attempt is late:
  // held back by max_active, or the scheduler window moved on).
  void ExpireFresh(int64_t now_ms);
  void ClearFresh();
  // The envelope and body of a due entry: the fresh copy, else read from
  // the spool. False when the attempt must not start (gone, held, moved);
  // the scheduler has then been told.
  bool LoadDue(const ScheduleEntry& entry, std::shared_ptr<v1::Envelope>* envelope,
               std::shared_ptr<const std::string>* body);
  void StartAttempt(const ScheduleEntry& entry);
  void JobDone(const std::string& queue_id, const DeliveryJob& job,
               std::vector<AttemptResult> results);
  void FinishAttempt(Attempt& attempt);
  // Appends the DSN owed for `recipients` of `envelope` to `records`;
  // nothing if none may be sent.
  void AddDsn(const v1::Envelope& envelope, const std::string& body, DsnKind kind,
              const std::vector<int>& recipients, std::vector<SpoolRecord>* records);
  void Submit(PendingWrite write, SpoolMutation mutation, std::vector<SpoolRecord> records);
  // What the gauges need of an envelope: kept per pending write instead of
  // copies of the whole envelope.
  struct GaugeState {
    bool held = false;
    bool deferred = false;
    int64_t arrival_s = 0;
  };
  static GaugeState GaugeStateOf(const v1::Envelope& envelope);
  void CountState(const GaugeState& state, int sign);
  void CountState(const v1::Envelope& envelope, int sign) {
    CountState(GaugeStateOf(envelope), sign);
  }
  void HandleAction(const v1::ActionRequest& request, std::function<void(v1::QueueReply)> reply);
  // Submits again the attempt results whose write failed, once due.
  void RetryFailedWrites(int64_t now_ms);

  SpoolStore* const store_;
  SpoolWriter* const writer_;
  DeliveryTransport* const transport_;
  RetrySchedule schedule_;
  QueueManagerOptions options_;
  std::function<absl::Time()> clock_;
  std::function<std::string()> next_id_;
  QueueObserver* const observer_;
  Scheduler scheduler_;
  std::mt19937_64 rng_;

  std::unordered_map<std::string, std::unique_ptr<Attempt>> attempts_;
  std::unordered_map<uint64_t, std::unique_ptr<PendingWrite>> writes_;
  // Attempt results whose write failed: (when to submit again, the write).
  std::vector<std::pair<int64_t, std::unique_ptr<PendingWrite>>> failed_writes_;
  std::unordered_map<std::string, Fresh> fresh_;
  std::deque<std::pair<int64_t, std::string>> fresh_order_;  // (added ms, id), oldest first
  size_t fresh_bytes_ = 0;
  uint64_t next_token_ = 1;
  bool scan_waiting_ = false;
  int64_t scan_from_ = 0, scan_to_ = 0;
  uint64_t scan_token_ = 0;

  uint64_t depth_ = 0, deferred_ = 0, held_ = 0;
  int64_t oldest_arrival_ = 0;  // seconds; 0 when unknown/empty
};

}  // namespace postern::queue

#endif  // POSTERN_QUEUE_QUEUE_MANAGER_H_
