// PolicyStore: the node's policy as a revisioned key/value store with etcd
// v3's semantics (KV, Txn, Watch, Lease). The admin API and the cluster are
// built on this interface; EmbeddedPolicyStore (embedded_policy_store.h) is
// its backend on the local disk.
//
// The model, as in etcd:
// - Keys and values are bytes, keys ordered bytewise. What a value means is
//   not this layer's business.
// - The store has one revision counter. Every transaction that changes
//   something is exactly one new revision; every key it touched gets that
//   revision as its mod_revision. Reads, failed compares and transactions
//   that change nothing leave it as it is. Revision 0 is the empty store.
// - A key's create_revision is the revision that created it (since its last
//   delete), its version the number of puts since then (1 after the first).
//   A put with the same value is still a change (new mod_revision, version).
// - Every revision has its audit record (who, when, from where, why, and the
//   keys it added, modified and removed), written in the same atomic write
//   as the change: no audit, no change.
// - The revision log keeps every revision's changes, so reads at an old
//   revision and watches from an old revision work until Compact() drops
//   that part of the log. Audit records are not compacted.
// - Leases: a key put with a lease is deleted when the lease is revoked or
//   expires, all its keys in one revision.
//
// Errors (absl::Status; nothing throws):
// - kOutOfRange: the revision asked for has been compacted (Range, Watch,
//   Compact of a revision already compacted). The caller lists again at the
//   current revision and watches from there, as Kubernetes does on 410 Gone.
//   IsCompacted() tells this case apart. A live watch that falls behind a
//   compaction ends with this code too.
// - kInvalidArgument: a malformed request, or a revision in the future.
// - kNotFound: an unknown or expired lease.
// - kResourceExhausted: the disk is full. kUnavailable: another I/O error,
//   or the backend waits to recover from one. Nothing was written, except in
//   the one case fsync makes inherent (see EmbeddedPolicyStore).
// - kDataLoss: a stored record does not parse, or the log has a hole.
// A compare that fails is not an error: Txn() answers succeeded == false,
// naming the compare (TxnResult::ToStatus() turns that into kAborted).
//
// Threading: every method is thread-safe. See the backend for what blocks.
#ifndef POSTERN_CONTROL_POLICY_STORE_POLICY_STORE_H_
#define POSTERN_CONTROL_POLICY_STORE_POLICY_STORE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/policy_store.pb.h"

namespace postern::control {

// The keys a Range or Watch covers: one key, or every key with a prefix
// (the empty prefix: all keys).
struct KeySelector {
  std::string key;
  bool prefix = false;

  static KeySelector Key(std::string key) { return {std::move(key), false}; }
  static KeySelector Prefix(std::string prefix) { return {std::move(prefix), true}; }
  bool Matches(std::string_view k) const;
};

struct RangeRequest {
  KeySelector keys;
  // 0: the current revision. Otherwise the keys as they were at this
  // revision; kOutOfRange once it is compacted, kInvalidArgument when it is
  // above the current revision.
  int64_t revision = 0;
  size_t limit = 0;  // 0: no limit
};

struct RangeResult {
  std::vector<v1::KeyValue> kvs;  // in key order
  bool more = false;              // the limit cut the result short
  int64_t revision = 0;           // the store's current revision
  int64_t compact_revision = 0;   // reads at revisions below this fail
};

// One condition of a transaction. On a key: compares the key's field (a key
// that does not exist has every number 0 and an empty value). Or compares
// the store's current revision (posternctl's --expect-revision).
struct Compare {
  enum class Target { kModRevision, kCreateRevision, kVersion, kValue, kStoreRevision };
  enum class Op { kEqual, kNotEqual, kLess, kGreater };

  Target target = Target::kModRevision;
  Op op = Op::kEqual;
  std::string key;     // unused for kStoreRevision
  int64_t number = 0;  // the revision or version to compare with
  std::string value;   // for kValue

  // The key was last written at `revision`: compare-and-swap.
  static Compare ModRevisionIs(std::string key, int64_t revision) {
    return {Target::kModRevision, Op::kEqual, std::move(key), revision, {}};
  }
  // The key does not exist (its mod_revision is 0).
  static Compare Absent(std::string key) { return ModRevisionIs(std::move(key), 0); }
  // Nothing changed in the store since `revision`.
  static Compare StoreRevisionIs(int64_t revision) {
    return {Target::kStoreRevision, Op::kEqual, {}, revision, {}};
  }
  static Compare ValueIs(std::string key, std::string value) {
    return {Target::kValue, Op::kEqual, std::move(key), 0, std::move(value)};
  }
};

// One change of a transaction. A transaction may not touch a key twice: a
// key put twice, or put and deleted (also by a prefix), is kInvalidArgument.
// Deleting what does not exist is no change.
struct TxnOp {
  enum class Type { kPut, kDelete, kDeletePrefix };

  Type type = Type::kPut;
  std::string key;    // the key, or the prefix ("" deletes every key)
  std::string value;  // kPut
  int64_t lease = 0;  // kPut: attach to this lease (0: none, detaches)

  static TxnOp Put(std::string key, std::string value, int64_t lease = 0) {
    return {Type::kPut, std::move(key), std::move(value), lease};
  }
  static TxnOp Delete(std::string key) { return {Type::kDelete, std::move(key), {}, 0}; }
  static TxnOp DeletePrefix(std::string prefix) {
    return {Type::kDeletePrefix, std::move(prefix), {}, 0};
  }
};

// Who asks for a change; the store adds the time, revision and diff.
struct AuditInfo {
  std::string actor;  // required for Txn: who, as authenticated by the caller
  std::string source;
  std::string summary;
};

struct TxnRequest {
  std::vector<Compare> compares;  // all must hold
  std::vector<TxnOp> ops;         // applied, as one revision, if they do
  AuditInfo audit;
};

struct TxnResult {
  bool succeeded = false;  // every compare held
  bool changed = false;    // succeeded and made a new revision
  // changed: the new revision; otherwise the current one (unchanged).
  int64_t revision = 0;
  // changed: the audit record written with the change.
  v1::AuditRecord audit;
  // !succeeded: the index of the first compare that failed, and what it
  // found ("key \"policy/relay\": mod_revision is 7, expected == 5").
  int failed_compare = -1;
  std::string conflict;

  // OK when succeeded; kAborted with `conflict` otherwise.
  absl::Status ToStatus() const;
};

// The events of one revision that a watch covers.
struct WatchResponse {
  int64_t revision = 0;
  std::vector<v1::Event> events;  // in key order; never empty when status is OK
  // Not OK: the watch has ended and this is its last call (kOutOfRange: it
  // fell behind a compaction; re-list and watch again).
  absl::Status status;
};

using WatchCallback = std::function<void(const WatchResponse&)>;
using WatchId = int64_t;

struct LeaseInfo {
  int64_t id = 0;
  absl::Duration ttl;             // as granted
  absl::Duration remaining;       // until it expires unless kept alive
  std::vector<std::string> keys;  // attached keys, in key order
};

struct StoreInfo {
  int64_t revision = 0;
  int64_t compact_revision = 0;
};

class PolicyStore {
 public:
  virtual ~PolicyStore() = default;

  // The keys `request.keys` selects, at `request.revision`.
  virtual absl::StatusOr<RangeResult> Range(const RangeRequest& request) = 0;

  // If every compare holds, applies every op as one new revision with its
  // audit record. A failed compare changes nothing and is answered with
  // succeeded == false (not an error status).
  virtual absl::StatusOr<TxnResult> Txn(const TxnRequest& request) = 0;

  // Calls `callback` once for every revision after `after_revision` that
  // changed a key `keys` selects, in revision order, exactly once each:
  // first those already in the log, then new ones as they are committed.
  // after_revision 0 is the whole history; to see only what comes next,
  // pass the revision of a Range (list, then watch). Fails with kOutOfRange
  // when after_revision is below the compact revision. A revision above the
  // current one is allowed (its events come when it happens).
  virtual absl::StatusOr<WatchId> Watch(KeySelector keys, int64_t after_revision,
                                        WatchCallback callback) = 0;
  // Ends a watch. When it returns, the watch's callback is not running and
  // will not be called again, except when called from that callback itself
  // (which then finishes its current call). Unknown ids are ignored.
  virtual void CancelWatch(WatchId id) = 0;

  // Audit records with revision <= `at_or_before` (0: the current
  // revision), newest first, at most `limit`. Page with the last revision
  // seen, minus one.
  virtual absl::StatusOr<std::vector<v1::AuditRecord>> Audit(int64_t at_or_before,
                                                             size_t limit) = 0;
  absl::StatusOr<std::vector<v1::AuditRecord>> History(size_t limit) { return Audit(0, limit); }

  // A new lease that expires `ttl` after its grant or last KeepAlive.
  virtual absl::StatusOr<LeaseInfo> GrantLease(absl::Duration ttl) = 0;
  // Renews the lease; answers its TTL. kNotFound once revoked or expired.
  virtual absl::StatusOr<absl::Duration> KeepAlive(int64_t lease) = 0;
  virtual absl::StatusOr<LeaseInfo> LeaseTimeToLive(int64_t lease) = 0;
  // Deletes the lease and its keys (in one revision, with an audit record
  // naming the lease, if it has keys). Answers the store's revision after.
  virtual absl::StatusOr<int64_t> RevokeLease(int64_t lease, const AuditInfo& audit) = 0;

  // Drops the revision log up to and including `revision`: reads and watches
  // at revisions below it fail from then on. The current keys and the audit
  // records stay. kOutOfRange when already compacted that far,
  // kInvalidArgument above the current revision.
  virtual absl::Status Compact(int64_t revision) = 0;

  virtual absl::StatusOr<StoreInfo> Info() = 0;

  // Convenience: the current value of one key; kNotFound when absent.
  absl::StatusOr<v1::KeyValue> Get(const std::string& key);
};

// Whether `status` says a revision has been compacted (re-list and watch
// again from the new revision).
bool IsCompacted(const absl::Status& status);

}  // namespace postern::control

#endif  // POSTERN_CONTROL_POLICY_STORE_POLICY_STORE_H_
