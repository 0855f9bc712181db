// EmbeddedPolicyStore: the PolicyStore of one node, a RocksDB database in a
// directory (posternd: <data_dir>/control). FORMAT.md in this folder
// describes the bytes on disk.
//
// Durability: every change (a revision, a lease granted or revoked, a
// compaction) is one RocksDB WriteBatch written with sync = true, holding
// the keys, the revision's log record, its audit record and the counters.
// A call returns OK only after that fsync, so what was acknowledged survives
// kill -9 and power loss; after a crash a batch is there whole or not at
// all. Watchers are fed only after the batch is durable.
//
// A failed write returns an error and changes nothing: not on disk, not in
// memory. One exception, inherent to fsync: when the WAL append succeeded
// and only the fsync failed, the batch is "in doubt" and can reappear whole
// when the WAL is replayed (after a restart, or the reopen below), as the
// next revision with its audit record. After a failed write RocksDB refuses
// further writes; the next write closes and reopens the database (at most
// once per `min_reopen_interval`, kUnavailable in between) and reloads the
// counters from disk. Reads go on from the open instance meanwhile. Never
// DB::Resume(): queue/spool_store.h says why.
//
// Reads (Range, Audit, Info) read one RocksDB snapshot each and never wait
// for a write in progress. Writes (Txn, leases, Compact) are serialized:
// one at a time, each one fsync. Range at an old revision undoes the log
// from the current revision back to the one asked for: its cost grows with
// the revisions since then (bounded by compaction).
//
// Leases: deadlines are kept in memory, on `lease_clock`; a reopened store
// gives every lease its full TTL again. Expired leases are revoked by
// ExpireLeases(), which a timer thread calls every `lease_check_interval`
// (0: no thread; tests call it with their own clock).
//
// Threading: every method is thread-safe. Watch callbacks run on the
// store's watch thread (watch_hub.h), one at a time, with no store lock
// held; they may call the store but must not destroy it. Destruction stops
// both threads; no callback runs after the destructor returns.
#ifndef POSTERN_CONTROL_POLICY_STORE_EMBEDDED_POLICY_STORE_H_
#define POSTERN_CONTROL_POLICY_STORE_EMBEDDED_POLICY_STORE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "control/policy_store/lease_table.h"
#include "control/policy_store/policy_store.h"
#include "control/policy_store/watch_hub.h"

namespace rocksdb {
class Env;
class WriteBatch;
}  // namespace rocksdb

namespace postern::control {

struct EmbeddedPolicyStoreOptions {
  // File system seam: borrowed, must outlive the store; nullptr means
  // rocksdb::Env::Default(). Tests pass an Env that injects faults.
  rocksdb::Env* env = nullptr;
  // The time written in audit records (and leases' granted_time).
  std::function<absl::Time()> wall_clock;  // default absl::Now
  // The clock of lease deadlines; default: monotonic (CLOCK_MONOTONIC).
  std::function<absl::Time()> lease_clock;
  absl::Duration lease_check_interval = absl::Milliseconds(500);  // 0: no timer
  absl::Duration min_lease_ttl = absl::Seconds(1);
  absl::Duration max_lease_ttl = absl::Seconds(9000000000);  // etcd's maximum
  // After a write error, reopen attempts are at least this far apart.
  absl::Duration min_reopen_interval = absl::Seconds(1);
  // The latest revisions kept in memory for live watches.
  size_t watch_cache_revisions = 1024;
  // Bounds on one transaction (kInvalidArgument beyond them).
  size_t max_ops_per_txn = 1024;
  size_t max_compares_per_txn = 1024;
  size_t max_key_size = 4096;
  size_t max_value_size = 1 << 20;
  size_t max_txn_bytes = 16 << 20;  // keys and values of all puts
};

class EmbeddedPolicyStore final : public PolicyStore {
 public:
  // Opens (creating the directory and database if missing) the store in
  // `dir`. One process at a time (RocksDB's LOCK file). Checks that the
  // counters agree with the log and audit families (kDataLoss otherwise).
  static absl::StatusOr<std::unique_ptr<EmbeddedPolicyStore>> Open(
      const std::string& dir, EmbeddedPolicyStoreOptions options = {});

  ~EmbeddedPolicyStore() override;
  EmbeddedPolicyStore(const EmbeddedPolicyStore&) = delete;
  EmbeddedPolicyStore& operator=(const EmbeddedPolicyStore&) = delete;

  absl::StatusOr<RangeResult> Range(const RangeRequest& request) override;
  absl::StatusOr<TxnResult> Txn(const TxnRequest& request) override;
  absl::StatusOr<WatchId> Watch(KeySelector keys, int64_t after_revision,
                                WatchCallback callback) override;
  void CancelWatch(WatchId id) override;
  absl::StatusOr<std::vector<v1::AuditRecord>> Audit(int64_t at_or_before, size_t limit) override;
  absl::StatusOr<LeaseInfo> GrantLease(absl::Duration ttl) override;
  absl::StatusOr<absl::Duration> KeepAlive(int64_t lease) override;
  absl::StatusOr<LeaseInfo> LeaseTimeToLive(int64_t lease) override;
  absl::StatusOr<int64_t> RevokeLease(int64_t lease, const AuditInfo& audit) override;
  absl::Status Compact(int64_t revision) override;
  absl::StatusOr<StoreInfo> Info() override;

  // Revokes every lease whose deadline is at or before `now` (on the lease
  // clock): one revision per lease that has keys, audited with cause
  // AUDIT_CAUSE_LEASE_EXPIRED. Answers how many leases it revoked; stops at
  // the first failed write (the rest are tried again next time).
  absl::StatusOr<int> ExpireLeases(absl::Time now);

  const std::string& dir() const { return dir_; }

 private:
  struct Db;         // the RocksDB instance and its column family handles
  struct ChangeSet;  // the keys a revision changes, before and after

  EmbeddedPolicyStore(std::string dir, EmbeddedPolicyStoreOptions options, std::unique_ptr<Db> db);

  // Reloads the counters and leases from the database and checks them
  // against the log (at open, and after a reopen).
  absl::Status LoadState() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) ABSL_LOCKS_EXCLUDED(db_mu_);
  // Reopens the database after a failed write, at most once per
  // min_reopen_interval.
  absl::Status ReopenIfNeeded() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_)
      ABSL_LOCKS_EXCLUDED(db_mu_);
  // Writes `batch` synced; a failure marks the database for reopening.
  absl::Status WriteSynced(Db& db, const char* what, rocksdb::WriteBatch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) ABSL_SHARED_LOCKS_REQUIRED(db_mu_);
  // Adds `changes`, their log and audit records and the counters to `batch`
  // as revision revision_ + 1, writes it, and publishes it to the watches.
  absl::StatusOr<v1::AuditRecord> CommitRevision(Db& db, rocksdb::WriteBatch* batch,
                                                 const ChangeSet& changes, v1::AuditRecord audit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) ABSL_SHARED_LOCKS_REQUIRED(db_mu_);
  // Deletes the lease and its keys: one revision if it has keys.
  absl::StatusOr<int64_t> RevokeLocked(int64_t lease, v1::AuditCause cause, const AuditInfo& audit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) ABSL_LOCKS_EXCLUDED(db_mu_);
  std::string MetaValue(int64_t revision, int64_t compact_revision, int64_t next_lease_id) const;
  // The log records of revisions [from, to], from one snapshot: the watch
  // hub's reader.
  absl::StatusOr<std::vector<WatchHub::Record>> ReadLog(int64_t from, int64_t to)
      ABSL_LOCKS_EXCLUDED(db_mu_);
  void LeaseTimerLoop() ABSL_LOCKS_EXCLUDED(timer_mu_);

  const std::string dir_;
  const EmbeddedPolicyStoreOptions options_;

  // Serializes writers; held across the fsync. Taken before db_mu_.
  absl::Mutex write_mu_;
  int64_t revision_ ABSL_GUARDED_BY(write_mu_) = 0;
  int64_t compact_revision_ ABSL_GUARDED_BY(write_mu_) = 0;
  int64_t next_lease_id_ ABSL_GUARDED_BY(write_mu_) = 1;
  absl::Time next_reopen_ ABSL_GUARDED_BY(write_mu_) = absl::InfinitePast();
  std::string last_error_ ABSL_GUARDED_BY(write_mu_);

  // Reader lock for every use of the database, writer lock only to replace
  // it after a failed write. RocksDB is thread-safe; this only keeps the
  // instance alive while it is used.
  absl::Mutex db_mu_ ABSL_ACQUIRED_AFTER(write_mu_);
  std::unique_ptr<Db> db_ ABSL_GUARDED_BY(db_mu_);  // null after a failed reopen
  std::atomic<bool> reopen_needed_{false};

  LeaseTable leases_;
  std::unique_ptr<WatchHub> hub_;

  absl::Mutex timer_mu_;
  bool stopping_ ABSL_GUARDED_BY(timer_mu_) = false;
  std::thread lease_timer_;
};

}  // namespace postern::control

#endif  // POSTERN_CONTROL_POLICY_STORE_EMBEDDED_POLICY_STORE_H_
