// SpoolStore: the durable spool of one shard, a RocksDB database in
// <data_dir>/spool/<shard>. queue/FORMAT.md describes the bytes on disk.
//
// Contract:
// - WriteBatch() returns OK only after all its records are in one synced
//   RocksDB WriteBatch (WAL fsynced). Nothing may be acknowledged to an SMTP
//   client before that. A batch is all-or-nothing: after a crash either every
//   record of it is there or none is.
// - A failed write returns an error and none of its records become readable.
//   One exception, inherent to fsync: when the fsync itself failed, the bytes
//   may already be in the WAL, so the batch is "in doubt" and can reappear,
//   whole, when the WAL is replayed (after a restart, or the reopen described
//   below). The caller answered 4xx, so the worst case is a duplicate
//   message, as with any MTA. When the WAL append failed, it never reappears.
// - The store stays usable after a write error. RocksDB then refuses writes
//   (background error). The next write, or Remove(), closes and reopens the
//   database, at most once per SpoolOptions::min_reopen_interval (kUnavailable
//   in between); reads keep using the old instance until then. Reopening,
//   not DB::Resume(): in RocksDB 7.8 Resume() and RocksDB's own ENOSPC
//   auto-recovery can go on writing to the WAL file whose write failed
//   (fixed upstream in 2024, facebook/rocksdb#12448 and #12995). Debian's
//   build keeps RocksDB's assertions, so that aborts the worker; without
//   them it could append after a torn record, and WAL replay stops at the
//   tear, losing acknowledged batches written after it. A reopen replays the
//   old WAL up to its last complete record, flushes it, and starts a fresh
//   WAL. If the reopen fails, every call answers kUnavailable until a later
//   call reopens it.
//
// Error codes: kResourceExhausted for ENOSPC, kUnavailable for other I/O
// errors and while waiting to reopen, kDataLoss for a record that does not
// parse, kNotFound for a missing id, kInvalidArgument for malformed input,
// kFailedPrecondition for writes to a read-only store.
//
// Threading: every method is thread-safe. In a worker the spool writer
// thread writes and the event loop may read. Calls block on disk I/O: keep
// them off the event loop thread where latency matters.
//
// Lifetime: owned by the worker (std::unique_ptr); must outlive every
// SpoolWriter that borrows it.
#ifndef POSTERN_QUEUE_SPOOL_STORE_H_
#define POSTERN_QUEUE_SPOOL_STORE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/queue.pb.h"

namespace rocksdb {
class Env;
class WriteBatch;
}  // namespace rocksdb

namespace postern::queue {

// One message to spool.
struct SpoolRecord {
  // envelope.queue_id() is the key and must be a valid queue id
  // (QueueIdGenerator::IsValid); envelope.body_size() must equal body.size().
  v1::Envelope envelope;
  std::string body;  // the message as it will be relayed, Received header included
};

// A change to a message already in the spool, applied in the same batch as
// new records (SpoolStore::Apply).
struct SpoolMutation {
  // remove: deletes the envelope and body of envelope.queue_id(); otherwise
  // rewrites the envelope (recipient states, schedule) and, when it is
  // scheduled (next_attempt set, not held), indexes it at its new due time.
  v1::Envelope envelope;
  bool remove = false;
  // The due time (ms since the epoch) under which the message is indexed
  // now, whose index key is deleted; -1 when it is not indexed.
  int64_t old_due_ms = -1;
  // false: the change need not be synced on its own. It is written (and
  // survives a crash of the process) at once, and is durable against power
  // loss with the next synced batch. For changes whose loss only repeats
  // work: the result of a delivery attempt (a lost removal delivers the
  // message again, as after any crash mid-delivery).
  bool sync = true;
};

// One key of the schedule index.
struct ScheduleEntry {
  int64_t due_ms = 0;
  std::string queue_id;
};

struct SpoolOptions {
  // File system seam: borrowed, must outlive the store; nullptr means
  // rocksdb::Env::Default(). Tests pass an Env that injects faults.
  rocksdb::Env* env = nullptr;

  // Bodies of at least this many bytes go to blob files (FORMAT.md).
  uint64_t min_blob_size = 4096;
  uint64_t blob_file_size = 64ull << 20;
  size_t body_write_buffer_size = 64ull << 20;
  size_t meta_write_buffer_size = 8ull << 20;
  // Two column families share one WAL, and a WAL file is kept until every
  // family's memtable that refers to it is flushed: this forces the flush.
  uint64_t max_total_wal_size = 256ull << 20;
  int max_background_jobs = 2;
  // After a write error, reopen attempts are at least this far apart, so a
  // failing disk does not turn every batch into a WAL replay.
  absl::Duration min_reopen_interval = absl::Seconds(1);
};

class SpoolStore {
 public:
  // Opens the spool in `dir` for reading and writing, creating the directory
  // (and parents) and the database if missing. One process at a time
  // (RocksDB's LOCK file).
  static absl::StatusOr<std::unique_ptr<SpoolStore>> Open(const std::string& dir,
                                                          const SpoolOptions& options = {});

  // Opens an existing spool for reading while a worker may have it open for
  // writing (postern-spool). Uses a RocksDB secondary instance, not
  // OpenForReadOnly: RocksDB documents OpenForReadOnly next to a live writer
  // as undefined behaviour (files can be deleted under it), while a
  // secondary keeps every file it uses open and is built for exactly this.
  // It sees what was durable when it opened. Its info log goes to a private
  // temporary directory, removed again on destruction. Writes fail with
  // kFailedPrecondition.
  static absl::StatusOr<std::unique_ptr<SpoolStore>> OpenReadOnly(const std::string& dir,
                                                                  const SpoolOptions& options = {});

  ~SpoolStore();
  SpoolStore(const SpoolStore&) = delete;
  SpoolStore& operator=(const SpoolStore&) = delete;

  // Stores every record (envelope and body) in one synced WriteBatch.
  // Record ids must be new: the body family relies on it (FORMAT.md). Fails
  // as a whole with kInvalidArgument if any record fails ValidateRecord() or
  // an id appears twice.
  absl::Status WriteBatch(const std::vector<SpoolRecord>& records);

  // WriteBatch() plus changes to messages already spooled, all in one
  // batch (the group commit of SpoolWriter). Records and mutations that are
  // scheduled get their key in the `schedule` family (FORMAT.md). The batch
  // is synced unless it holds only mutations with sync == false.
  absl::Status Apply(const std::vector<SpoolRecord>& records,
                     const std::vector<SpoolMutation>& mutations);

  // The per-record checks of WriteBatch(), for callers that batch records
  // of unrelated messages (SpoolWriter) and must not let one fail the rest.
  static absl::Status ValidateRecord(const SpoolRecord& record);

  absl::StatusOr<v1::Envelope> ReadEnvelope(std::string_view id);
  absl::StatusOr<std::string> ReadBody(std::string_view id);

  // Calls `fn` for every envelope in id order (oldest first). A non-OK status
  // from `fn` stops the walk and is returned. `fn` may call into the store
  // (Remove, ReadBody): no lock is held while it runs, and the walk is not a
  // snapshot: records written or removed meanwhile may or may not be seen.
  // Records that do not parse, or whose key is not a valid id or differs
  // from their queue_id, are skipped (quarantined, never fatal) and their
  // keys appended to `corrupt_ids` when it is given.
  using EnvelopeVisitor = absl::FunctionRef<absl::Status(const v1::Envelope&)>;
  absl::Status ForEachEnvelope(EnvelopeVisitor fn, std::vector<std::string>* corrupt_ids = nullptr);

  // Deletes the envelope and body of `id` (and its index key at `due_ms`,
  // if >= 0) in one synced batch. Removing an id that is not there is OK.
  // Each call costs one fsync.
  absl::Status Remove(std::string_view id, int64_t due_ms = -1);

  // Index keys with from_ms <= due < to_ms, in due order, at most `limit`.
  // The iterator is bounded on both sides, so tombstones of keys before
  // from_ms (messages already handed out and deleted) are never visited.
  absl::StatusOr<std::vector<ScheduleEntry>> ScanSchedule(int64_t from_ms, int64_t to_ms,
                                                          size_t limit);
  // Compacts the schedule index: at start-up, before the one scan that
  // starts from the beginning of time, so it does not wade through the
  // previous run's tombstones.
  absl::Status CompactSchedule();

  // The index key: 8 bytes big-endian due time in ms, then the queue id.
  static std::string ScheduleKey(int64_t due_ms, std::string_view id);
  // Whether an envelope belongs in the index, and under which due time.
  static bool IsScheduled(const v1::Envelope& envelope);
  static int64_t DueMs(const v1::Envelope& envelope);

  // The largest id in the spool, "" when it is empty. A read error also
  // gives "" (the start-up ForEachEnvelope that follows reports it); used
  // with QueueIdGenerator::AdvancePast.
  std::string LastId();

  const std::string& dir() const { return dir_; }
  bool read_only() const { return read_only_; }

 private:
  struct Db;  // the RocksDB instance and its column family handles

  SpoolStore(std::string dir, const SpoolOptions& options, bool read_only,
             std::string secondary_dir, std::unique_ptr<Db> db);

  // Reopens the database when an earlier write failed (`for_write`) or an
  // earlier reopen failed (db_ is null), rate limited.
  absl::Status ReopenIfNeeded(bool for_write) ABSL_LOCKS_EXCLUDED(mu_);
  // Builds a batch with `fill` against the current handles and commits it
  // (synced when `sync`); marks the store for recovery when RocksDB fails it.
  template <typename Fill>
  absl::Status Commit(const char* what, bool sync, Fill fill) ABSL_LOCKS_EXCLUDED(mu_);

  const std::string dir_;
  const SpoolOptions options_;
  const bool read_only_;
  const std::string secondary_dir_;  // read-only stores: info log directory

  // Reader lock for every use of the database, writer lock only to replace
  // it after a fatal write error. RocksDB is thread-safe itself; the lock
  // only keeps the instance alive while it is used.
  absl::Mutex mu_;
  std::unique_ptr<Db> db_ ABSL_GUARDED_BY(mu_);  // null after a failed reopen
  // Set (under the reader lock, hence atomic) when a write fails or a reopen
  // fails; cleared by a successful reopen.
  std::atomic<bool> reopen_needed_{false};
  absl::Time next_reopen_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Mutex error_mu_;  // taken inside mu_ (either mode), never around it
  std::string last_error_ ABSL_GUARDED_BY(error_mu_);  // for "waiting to reopen"
};

}  // namespace postern::queue

#endif  // POSTERN_QUEUE_SPOOL_STORE_H_
