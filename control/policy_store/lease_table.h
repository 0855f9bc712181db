// LeaseTable: the leases a policy store knows, in memory: each lease's TTL,
// its deadline and the keys attached to it. The durable part (that a lease
// exists, its TTL, which lease a key belongs to) is in the store's RocksDB
// families; this table is rebuilt from them at open. Deadlines are never
// written: a reopened store gives every lease its full TTL again.
//
// Times are on the store's lease clock (monotonic in production, injected
// in tests); only differences matter.
//
// Threading: thread-safe, one mutex, held briefly (KeepAlive does not wait
// for a write in progress).
#ifndef POSTERN_CONTROL_POLICY_STORE_LEASE_TABLE_H_
#define POSTERN_CONTROL_POLICY_STORE_LEASE_TABLE_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "control/policy_store/policy_store.h"

namespace postern::control {

class LeaseTable {
 public:
  // Adds (or replaces) a lease expiring at `deadline`.
  void Add(int64_t id, absl::Duration ttl, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  // Adds a lease found on disk, keeping its deadline if it is known already.
  void AddIfMissing(int64_t id, absl::Duration ttl, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  void Remove(int64_t id) ABSL_LOCKS_EXCLUDED(mu_);
  // Forgets every lease whose id is not in `ids`, and every attachment.
  void RetainOnly(const std::set<int64_t>& ids) ABSL_LOCKS_EXCLUDED(mu_);

  // Whether the lease exists and has not expired at `now`.
  bool IsLive(int64_t id, absl::Time now) const ABSL_LOCKS_EXCLUDED(mu_);
  // Moves `key` from lease `from` to lease `to` (either may be 0: none).
  void Move(const std::string& key, int64_t from, int64_t to) ABSL_LOCKS_EXCLUDED(mu_);

  // Renews the lease at `now`; kNotFound when unknown or already expired.
  absl::StatusOr<absl::Duration> KeepAlive(int64_t id, absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);
  // kNotFound when unknown.
  absl::StatusOr<LeaseInfo> Info(int64_t id, absl::Time now) const ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<std::string> Keys(int64_t id) const ABSL_LOCKS_EXCLUDED(mu_);
  // Leases whose deadline is <= now, in id order.
  std::vector<int64_t> Expired(absl::Time now) const ABSL_LOCKS_EXCLUDED(mu_);
  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Lease {
    absl::Duration ttl;
    absl::Time deadline;
    std::set<std::string> keys;
  };

  mutable absl::Mutex mu_;
  std::map<int64_t, Lease> leases_ ABSL_GUARDED_BY(mu_);
};

}  // namespace postern::control

#endif  // POSTERN_CONTROL_POLICY_STORE_LEASE_TABLE_H_
