#include "control/policy_store/embedded_policy_store.h"

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/quote.h"
#include "control/policy_store/rocksdb_support.h"

namespace postern::control {
namespace {

namespace psi = policy_store_internal;

constexpr uint32_t kFormatVersion = 1;

absl::Status Compacted(int64_t revision, int64_t compact_revision) {
  return absl::OutOfRangeError(absl::StrCat("policy store: revision ", revision,
                                            " has been compacted (compact revision ",
                                            compact_revision, ")"));
}

std::string Q(const std::string& s) { return Quote(absl::string_view(s.data(), s.size())); }

// One RocksDB snapshot, released on destruction; reads through options().
class Snapshot {
 public:
  explicit Snapshot(rocksdb::DB* db) : db_(db), snapshot_(db->GetSnapshot()) {}
  ~Snapshot() { db_->ReleaseSnapshot(snapshot_); }
  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;
  rocksdb::ReadOptions options() const {
    rocksdb::ReadOptions options;
    options.snapshot = snapshot_;
    return options;
  }

 private:
  rocksdb::DB* db_;
  const rocksdb::Snapshot* snapshot_;
};

// A kv family record: the KeyValue without its key (the RocksDB key is it).
absl::StatusOr<v1::KeyValue> ParseKv(const rocksdb::Slice& key, const rocksdb::Slice& value) {
  v1::KeyValue kv;
  if (!kv.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError(
        absl::StrCat("policy store: the record of key ", Q(key.ToString()), " does not parse"));
  }
  kv.set_key(key.data(), key.size());
  return kv;
}

std::string KvValue(const v1::KeyValue& kv) {
  v1::KeyValue stored = kv;
  stored.clear_key();
  return stored.SerializeAsString();
}

template <typename Message>
absl::StatusOr<Message> ParseNumbered(const rocksdb::Slice& value, const char* what, int64_t n) {
  Message message;
  if (!message.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError(absl::StrCat("policy store: ", what, " ", n, " does not parse"));
  }
  return message;
}

bool Holds(Compare::Op op, int cmp) {  // cmp: <0, 0, >0 of actual vs expected
  switch (op) {
    case Compare::Op::kEqual:
      return cmp == 0;
    case Compare::Op::kNotEqual:
      return cmp != 0;
    case Compare::Op::kLess:
      return cmp < 0;
    case Compare::Op::kGreater:
      return cmp > 0;
  }
  return false;
}

const char* OpName(Compare::Op op) {
  switch (op) {
    case Compare::Op::kEqual:
      return "==";
    case Compare::Op::kNotEqual:
      return "!=";
    case Compare::Op::kLess:
      return "<";
    case Compare::Op::kGreater:
      return ">";
  }
  return "?";
}

const char* TargetName(Compare::Target target) {
  switch (target) {
    case Compare::Target::kModRevision:
      return "mod_revision";
    case Compare::Target::kCreateRevision:
      return "create_revision";
    case Compare::Target::kVersion:
      return "version";
    case Compare::Target::kValue:
      return "value";
    case Compare::Target::kStoreRevision:
      return "store revision";
  }
  return "?";
}

int Cmp(int64_t a, int64_t b) { return a < b ? -1 : (a > b ? 1 : 0); }

absl::Status ValidateTxn(const TxnRequest& request, const EmbeddedPolicyStoreOptions& options) {
  if (request.audit.actor.empty()) {
    return absl::InvalidArgumentError("policy store: a transaction needs an audit actor");
  }
  if (request.ops.size() > options.max_ops_per_txn) {
    return absl::InvalidArgumentError(absl::StrCat("policy store: ", request.ops.size(),
                                                   " ops in one transaction, at most ",
                                                   options.max_ops_per_txn));
  }
  if (request.compares.size() > options.max_compares_per_txn) {
    return absl::InvalidArgumentError(absl::StrCat("policy store: ", request.compares.size(),
                                                   " compares in one transaction, at most ",
                                                   options.max_compares_per_txn));
  }
  for (const Compare& c : request.compares) {
    if (c.target != Compare::Target::kStoreRevision && c.key.empty()) {
      return absl::InvalidArgumentError("policy store: a compare on the empty key");
    }
  }
  size_t bytes = 0;
  std::set<std::string> puts;
  std::set<std::string> deletes;
  std::vector<const std::string*> prefixes;
  for (const TxnOp& op : request.ops) {
    if (op.key.size() > options.max_key_size) {
      return absl::InvalidArgumentError(absl::StrCat("policy store: key ", Q(op.key), " has ",
                                                     op.key.size(), " bytes, at most ",
                                                     options.max_key_size));
    }
    switch (op.type) {
      case TxnOp::Type::kPut:
        if (op.key.empty()) return absl::InvalidArgumentError("policy store: put of the empty key");
        if (op.value.size() > options.max_value_size) {
          return absl::InvalidArgumentError(
              absl::StrCat("policy store: the value of ", Q(op.key), " has ", op.value.size(),
                           " bytes, at most ", options.max_value_size));
        }
        if (op.lease < 0) {
          return absl::InvalidArgumentError(absl::StrCat("policy store: lease ", op.lease));
        }
        if (!puts.insert(op.key).second) {
          return absl::InvalidArgumentError(
              absl::StrCat("policy store: key ", Q(op.key), " is put twice in one transaction"));
        }
        bytes += op.key.size() + op.value.size();
        break;
      case TxnOp::Type::kDelete:
        if (op.key.empty()) {
          return absl::InvalidArgumentError("policy store: delete of the empty key");
        }
        deletes.insert(op.key);
        break;
      case TxnOp::Type::kDeletePrefix:
        prefixes.push_back(&op.key);
        break;
    }
  }
  if (bytes > options.max_txn_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("policy store: the transaction puts ", bytes,
                                                   " bytes, at most ", options.max_txn_bytes));
  }
  for (const std::string& key : puts) {
    bool deleted = deletes.count(key) != 0;
    for (const std::string* prefix : prefixes) {
      deleted = deleted || key.compare(0, prefix->size(), *prefix) == 0;
    }
    if (deleted) {
      return absl::InvalidArgumentError(
          absl::StrCat("policy store: key ", Q(key), " is put and deleted in one transaction"));
    }
  }
  return absl::OkStatus();
}

absl::Time MonotonicNow() { return absl::UnixEpoch() + absl::Milliseconds(MonotonicMs()); }

}  // namespace

struct EmbeddedPolicyStore::Db {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // default, kv, log, audit, lease, meta
  rocksdb::ColumnFamilyHandle* kv = nullptr;
  rocksdb::ColumnFamilyHandle* log = nullptr;
  rocksdb::ColumnFamilyHandle* audit = nullptr;
  rocksdb::ColumnFamilyHandle* lease = nullptr;
  rocksdb::ColumnFamilyHandle* meta = nullptr;

  ~Db() {
    if (db == nullptr) return;
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    db->Close().PermitUncheckedError();  // errors were reported by the writes
  }

  static absl::StatusOr<std::unique_ptr<Db>> Open(const std::string& dir, rocksdb::Env* env) {
    auto result = std::make_unique<Db>();
    rocksdb::DB* raw = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(psi::MakeDbOptions(env), dir, psi::MakeColumnFamilies(),
                                          &result->handles, &raw);
    if (!s.ok()) return psi::FromRocks(s, absl::StrCat("open ", dir));
    result->db.reset(raw);
    result->kv = result->handles[1];
    result->log = result->handles[2];
    result->audit = result->handles[3];
    result->lease = result->handles[4];
    result->meta = result->handles[5];
    return result;
  }

  absl::StatusOr<v1::StoreMeta> ReadMeta(const rocksdb::ReadOptions& options) {
    std::string value;
    rocksdb::Status s = db->Get(options, meta, psi::kMetaKey, &value);
    v1::StoreMeta result;
    if (s.IsNotFound()) {  // a new store
      result.set_format_version(kFormatVersion);
      result.set_next_lease_id(1);
      return result;
    }
    if (!s.ok()) return psi::FromRocks(s, "read meta");
    if (!result.ParseFromString(value)) {
      return absl::DataLossError("policy store: the meta record does not parse");
    }
    if (result.format_version() != kFormatVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat("policy store: format version ", result.format_version(),
                       "; this build reads version ", kFormatVersion));
    }
    return result;
  }

  // The current value of `key`; nullopt when absent.
  absl::StatusOr<std::optional<v1::KeyValue>> Get(const rocksdb::ReadOptions& options,
                                                  const std::string& key) {
    rocksdb::PinnableSlice value;
    rocksdb::Status s = db->Get(options, kv, key, &value);
    if (s.IsNotFound()) return std::optional<v1::KeyValue>();
    if (!s.ok()) return psi::FromRocks(s, "read");
    absl::StatusOr<v1::KeyValue> parsed = ParseKv(key, value);
    if (!parsed.ok()) return parsed.status();
    return std::optional<v1::KeyValue>(std::move(*parsed));
  }

  // Calls fn(kv) for the current keys `keys` selects, in key order, until
  // it returns false.
  template <typename Fn>
  absl::Status Scan(rocksdb::ReadOptions options, const KeySelector& keys, Fn fn) {
    if (!keys.prefix) {
      absl::StatusOr<std::optional<v1::KeyValue>> one = Get(options, keys.key);
      if (!one.ok()) return one.status();
      if (one->has_value()) fn(std::move(**one));
      return absl::OkStatus();
    }
    const std::optional<std::string> end = psi::PrefixEnd(keys.key);
    rocksdb::Slice lower(keys.key), upper;
    options.iterate_lower_bound = &lower;
    if (end.has_value()) {
      upper = rocksdb::Slice(*end);
      options.iterate_upper_bound = &upper;
    }
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(options, kv));
    for (it->Seek(lower); it->Valid(); it->Next()) {
      absl::StatusOr<v1::KeyValue> parsed = ParseKv(it->key(), it->value());
      if (!parsed.ok()) return parsed.status();
      if (!fn(std::move(*parsed))) break;
    }
    return psi::FromRocks(it->status(), "scan");
  }

  // Calls fn(record) for the log records of revisions [from, to], newest
  // first when `reverse`; kDataLoss unless every one of them is there.
  template <typename Fn>
  absl::Status ScanLog(rocksdb::ReadOptions options, int64_t from, int64_t to, bool reverse,
                       Fn fn) {
    if (from > to) return absl::OkStatus();
    const std::string lower_key = psi::NumberKey(from);
    const std::string upper_key = psi::NumberKey(to + 1);
    rocksdb::Slice lower(lower_key), upper(upper_key);
    options.iterate_lower_bound = &lower;
    options.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(options, log));
    int64_t expected = reverse ? to : from;
    for (reverse ? it->SeekToLast() : it->SeekToFirst(); it->Valid();
         reverse ? it->Prev() : it->Next()) {
      std::optional<int64_t> revision = psi::ParseNumberKey(it->key().ToStringView());
      if (!revision.has_value() || *revision != expected) break;
      absl::StatusOr<v1::RevisionRecord> record =
          ParseNumbered<v1::RevisionRecord>(it->value(), "log record", expected);
      if (!record.ok()) return record.status();
      if (record->revision() != expected) {
        return absl::DataLossError(absl::StrCat("policy store: log record ", expected,
                                                " says revision ", record->revision()));
      }
      fn(std::move(*record));
      expected += reverse ? -1 : 1;
    }
    if (!it->status().ok()) return psi::FromRocks(it->status(), "read log");
    if (reverse ? expected != from - 1 : expected != to + 1) {
      return absl::DataLossError(
          absl::StrCat("policy store: the revision log has no record of revision ", expected));
    }
    return absl::OkStatus();
  }
};

struct EmbeddedPolicyStore::ChangeSet {
  struct Change {
    std::optional<v1::KeyValue> prev;  // absent: the key did not exist
    std::optional<v1::KeyValue> next;  // absent: deleted
  };
  std::map<std::string, Change> changes;  // key order
};

EmbeddedPolicyStore::EmbeddedPolicyStore(std::string dir, EmbeddedPolicyStoreOptions options,
                                         std::unique_ptr<Db> db)
    : dir_(std::move(dir)), options_(std::move(options)), db_(std::move(db)) {}

absl::StatusOr<std::unique_ptr<EmbeddedPolicyStore>> EmbeddedPolicyStore::Open(
    const std::string& dir, EmbeddedPolicyStoreOptions options) {
  if (!options.wall_clock) options.wall_clock = [] { return absl::Now(); };
  if (!options.lease_clock) options.lease_clock = MonotonicNow;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("policy store: cannot create ", dir, ": ", ec.message()));
  }
  absl::StatusOr<std::unique_ptr<Db>> db = Db::Open(dir, options.env);
  if (!db.ok()) return db.status();
  std::unique_ptr<EmbeddedPolicyStore> store(
      new EmbeddedPolicyStore(dir, std::move(options), std::move(*db)));
  int64_t revision = 0;
  int64_t compact_revision = 0;
  {
    absl::MutexLock lock(&store->write_mu_);
    if (absl::Status loaded = store->LoadState(); !loaded.ok()) return loaded;
    revision = store->revision_;
    compact_revision = store->compact_revision_;
  }
  EmbeddedPolicyStore* raw = store.get();
  store->hub_ =
      std::make_unique<WatchHub>([raw](int64_t from, int64_t to) { return raw->ReadLog(from, to); },
                                 store->options_.watch_cache_revisions);
  store->hub_->Reset(revision, compact_revision);
  if (store->options_.lease_check_interval > absl::ZeroDuration()) {
    store->lease_timer_ = std::thread([raw] { raw->LeaseTimerLoop(); });
  }
  return store;
}

EmbeddedPolicyStore::~EmbeddedPolicyStore() {
  {
    absl::MutexLock lock(&timer_mu_);
    stopping_ = true;
  }
  if (lease_timer_.joinable()) lease_timer_.join();
  if (hub_ != nullptr) hub_->Stop();
  absl::MutexLock lock(&db_mu_);
  db_.reset();
}

absl::Status EmbeddedPolicyStore::LoadState() {
  absl::ReaderMutexLock lock(&db_mu_);
  if (db_ == nullptr) return absl::UnavailableError("policy store: database closed");
  Snapshot snapshot(db_->db.get());
  const rocksdb::ReadOptions read = snapshot.options();
  absl::StatusOr<v1::StoreMeta> meta = db_->ReadMeta(read);
  if (!meta.ok()) return meta.status();

  // The counters must agree with the log and the audit trail: each revision
  // wrote all three in one batch.
  std::unique_ptr<rocksdb::Iterator> it(db_->db->NewIterator(read, db_->log));
  it->SeekToLast();
  if (!it->status().ok()) return psi::FromRocks(it->status(), "read log");
  const int64_t last_logged = it->Valid()
                                  ? psi::ParseNumberKey(it->key().ToStringView()).value_or(-1)
                                  : meta->compact_revision();
  if (last_logged != meta->revision() || meta->compact_revision() > meta->revision()) {
    return absl::DataLossError(absl::StrCat(
        "policy store: the revision counter says ", meta->revision(), " (compacted to ",
        meta->compact_revision(), ") but the revision log ends at ", last_logged));
  }
  it.reset(db_->db->NewIterator(read, db_->audit));
  it->SeekToLast();
  if (!it->status().ok()) return psi::FromRocks(it->status(), "read audit");
  const int64_t last_audited =
      it->Valid() ? psi::ParseNumberKey(it->key().ToStringView()).value_or(-1) : 0;
  if (last_audited != meta->revision()) {
    return absl::DataLossError(absl::StrCat("policy store: the revision counter says ",
                                            meta->revision(), " but the audit trail ends at ",
                                            last_audited));
  }

  // Leases, and the keys attached to them.
  std::set<int64_t> ids;
  std::vector<std::pair<int64_t, absl::Duration>> found;
  it.reset(db_->db->NewIterator(read, db_->lease));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const int64_t id = psi::ParseNumberKey(it->key().ToStringView()).value_or(0);
    absl::StatusOr<v1::Lease> lease = ParseNumbered<v1::Lease>(it->value(), "lease", id);
    if (!lease.ok()) return lease.status();
    if (id <= 0 || lease->id() != id) {
      return absl::DataLossError(absl::StrCat("policy store: lease record ", id, " is corrupt"));
    }
    ids.insert(id);
    found.emplace_back(id, absl::Milliseconds(lease->ttl_ms()));
  }
  if (!it->status().ok()) return psi::FromRocks(it->status(), "read leases");
  leases_.RetainOnly(ids);
  const absl::Time now = options_.lease_clock();
  for (const auto& [id, ttl] : found) leases_.AddIfMissing(id, ttl, now + ttl);
  absl::Status scanned = db_->Scan(read, KeySelector::Prefix(""), [&](const v1::KeyValue& kv) {
    if (kv.lease() != 0) leases_.Move(kv.key(), 0, kv.lease());
    return true;
  });
  if (!scanned.ok()) return scanned;

  revision_ = meta->revision();
  compact_revision_ = meta->compact_revision();
  next_lease_id_ = std::max<int64_t>(meta->next_lease_id(), 1);
  if (hub_ != nullptr) hub_->Reset(revision_, compact_revision_);
  return absl::OkStatus();
}

absl::Status EmbeddedPolicyStore::ReopenIfNeeded() {
  if (!reopen_needed_.load(std::memory_order_acquire)) return absl::OkStatus();
  const absl::Time now = absl::Now();
  if (now < next_reopen_) {
    return absl::UnavailableError(
        absl::StrCat("policy store: waiting to reopen after a write error: ", last_error_));
  }
  next_reopen_ = now + options_.min_reopen_interval;
  {
    absl::MutexLock lock(&db_mu_);
    db_.reset();  // the LOCK file allows one instance at a time
    absl::StatusOr<std::unique_ptr<Db>> db = Db::Open(dir_, options_.env);
    if (!db.ok()) {
      last_error_ = std::string(db.status().message());
      return absl::UnavailableError(
          absl::StrCat("policy store: reopen after a write error failed: ", last_error_));
    }
    db_ = std::move(*db);
  }
  // A batch whose fsync failed may have come back with the WAL: the disk is
  // the truth, counters and watches follow it.
  if (absl::Status loaded = LoadState(); !loaded.ok()) {
    last_error_ = std::string(loaded.message());
    return loaded;
  }
  reopen_needed_.store(false, std::memory_order_release);
  return absl::OkStatus();
}

absl::Status EmbeddedPolicyStore::WriteSynced(Db& db, const char* what,
                                              rocksdb::WriteBatch* batch) {
  rocksdb::WriteOptions write_options;
  write_options.sync = true;
  rocksdb::Status s = db.db->Write(write_options, batch);
  if (!s.ok() && !s.IsInvalidArgument()) {
    // Any other failure may have left RocksDB in its error state.
    last_error_ = s.ToString();
    reopen_needed_.store(true, std::memory_order_release);
  }
  return psi::FromRocks(s, what);
}

std::string EmbeddedPolicyStore::MetaValue(int64_t revision, int64_t compact_revision,
                                           int64_t next_lease_id) const {
  v1::StoreMeta meta;
  meta.set_format_version(kFormatVersion);
  meta.set_revision(revision);
  meta.set_compact_revision(compact_revision);
  meta.set_next_lease_id(next_lease_id);
  return meta.SerializeAsString();
}

absl::StatusOr<v1::AuditRecord> EmbeddedPolicyStore::CommitRevision(Db& db,
                                                                    rocksdb::WriteBatch* batch,
                                                                    const ChangeSet& changes,
                                                                    v1::AuditRecord audit) {
  const int64_t revision = revision_ + 1;
  auto record = std::make_shared<v1::RevisionRecord>();
  record->set_revision(revision);
  rocksdb::Status s;
  for (const auto& [key, change] : changes.changes) {
    v1::Event* event = record->add_events();
    v1::KeyChange* diff = audit.add_changes();
    diff->set_key(key);
    if (change.next.has_value()) {
      event->set_type(v1::EVENT_TYPE_PUT);
      *event->mutable_kv() = *change.next;
      diff->set_kind(change.prev.has_value() ? v1::CHANGE_KIND_MODIFIED : v1::CHANGE_KIND_ADDED);
      diff->set_value_size(change.next->value().size());
      if (s.ok()) s = batch->Put(db.kv, key, KvValue(*change.next));
    } else {
      event->set_type(v1::EVENT_TYPE_DELETE);
      event->mutable_kv()->set_key(key);
      event->mutable_kv()->set_mod_revision(revision);
      diff->set_kind(v1::CHANGE_KIND_REMOVED);
      if (s.ok()) s = batch->Delete(db.kv, key);
    }
    if (change.prev.has_value()) {
      *event->mutable_prev_kv() = *change.prev;
      diff->set_prev_mod_revision(change.prev->mod_revision());
      diff->set_prev_value_size(change.prev->value().size());
    }
  }
  audit.set_revision(revision);
  *audit.mutable_time() = ToProtoTimestamp(options_.wall_clock());
  const std::string number = psi::NumberKey(revision);
  if (s.ok()) s = batch->Put(db.log, number, record->SerializeAsString());
  if (s.ok()) s = batch->Put(db.audit, number, audit.SerializeAsString());
  if (s.ok()) {
    s = batch->Put(db.meta, psi::kMetaKey, MetaValue(revision, compact_revision_, next_lease_id_));
  }
  if (!s.ok()) return psi::FromRocks(s, "batch");
  if (absl::Status written = WriteSynced(db, "write", batch); !written.ok()) return written;

  revision_ = revision;
  for (const auto& [key, change] : changes.changes) {
    leases_.Move(key, change.prev.has_value() ? change.prev->lease() : 0,
                 change.next.has_value() ? change.next->lease() : 0);
  }
  hub_->Publish(std::move(record));
  return audit;
}

absl::StatusOr<RangeResult> EmbeddedPolicyStore::Range(const RangeRequest& request) {
  if (request.revision < 0) {
    return absl::InvalidArgumentError("policy store: range at a negative revision");
  }
  absl::ReaderMutexLock lock(&db_mu_);
  if (db_ == nullptr) return absl::UnavailableError("policy store: database closed");
  Snapshot snapshot(db_->db.get());
  const rocksdb::ReadOptions read = snapshot.options();
  absl::StatusOr<v1::StoreMeta> meta = db_->ReadMeta(read);
  if (!meta.ok()) return meta.status();
  RangeResult result;
  result.revision = meta->revision();
  result.compact_revision = meta->compact_revision();
  const int64_t at = request.revision == 0 ? meta->revision() : request.revision;
  if (at > meta->revision()) {
    return absl::InvalidArgumentError(absl::StrCat("policy store: revision ", at,
                                                   " is in the future (current revision ",
                                                   meta->revision(), ")"));
  }
  if (at < meta->compact_revision()) return Compacted(at, meta->compact_revision());
  const size_t limit = request.limit == 0 ? SIZE_MAX : request.limit;

  if (at == meta->revision()) {
    absl::Status scanned = db_->Scan(read, request.keys, [&](v1::KeyValue kv) {
      if (result.kvs.size() == limit) {
        result.more = true;
        return false;
      }
      result.kvs.push_back(std::move(kv));
      return true;
    });
    if (!scanned.ok()) return scanned;
    return result;
  }

  // An old revision: the current keys, with the revisions after `at`
  // undone, newest first.
  std::map<std::string, v1::KeyValue> state;
  absl::Status scanned = db_->Scan(read, request.keys, [&](v1::KeyValue kv) {
    std::string key = kv.key();
    state.emplace(std::move(key), std::move(kv));
    return true;
  });
  if (!scanned.ok()) return scanned;
  absl::Status undone = db_->ScanLog(read, at + 1, meta->revision(), /*reverse=*/true,
                                     [&](const v1::RevisionRecord& record) {
                                       for (const v1::Event& event : record.events()) {
                                         if (!request.keys.Matches(event.kv().key())) continue;
                                         if (event.has_prev_kv()) {
                                           state[event.kv().key()] = event.prev_kv();
                                         } else {
                                           state.erase(event.kv().key());
                                         }
                                       }
                                     });
  if (!undone.ok()) return undone;
  for (auto& [key, kv] : state) {
    if (result.kvs.size() == limit) {
      result.more = true;
      break;
    }
    kv.set_key(key);
    result.kvs.push_back(std::move(kv));
  }
  return result;
}

absl::StatusOr<TxnResult> EmbeddedPolicyStore::Txn(const TxnRequest& request) {
  if (absl::Status valid = ValidateTxn(request, options_); !valid.ok()) return valid;
  absl::MutexLock lock(&write_mu_);
  if (absl::Status reopened = ReopenIfNeeded(); !reopened.ok()) return reopened;
  absl::ReaderMutexLock db_lock(&db_mu_);
  if (db_ == nullptr) return absl::UnavailableError("policy store: database closed");
  const rocksdb::ReadOptions read;  // writers are serialized: the latest state

  TxnResult result;
  result.revision = revision_;
  for (size_t i = 0; i < request.compares.size(); ++i) {
    const Compare& c = request.compares[i];
    bool holds = false;
    std::string found;
    if (c.target == Compare::Target::kStoreRevision) {
      holds = Holds(c.op, Cmp(revision_, c.number));
      found = absl::StrCat(revision_);
    } else {
      absl::StatusOr<std::optional<v1::KeyValue>> kv = db_->Get(read, c.key);
      if (!kv.ok()) return kv.status();
      const v1::KeyValue current = kv->value_or(v1::KeyValue());
      switch (c.target) {
        case Compare::Target::kModRevision:
          holds = Holds(c.op, Cmp(current.mod_revision(), c.number));
          found = absl::StrCat(current.mod_revision());
          break;
        case Compare::Target::kCreateRevision:
          holds = Holds(c.op, Cmp(current.create_revision(), c.number));
          found = absl::StrCat(current.create_revision());
          break;
        case Compare::Target::kVersion:
          holds = Holds(c.op, Cmp(current.version(), c.number));
          found = absl::StrCat(current.version());
          break;
        case Compare::Target::kValue:
          // As etcd: a value compare on a key that does not exist fails.
          holds = kv->has_value() && Holds(c.op, current.value().compare(c.value));
          found = kv->has_value() ? absl::StrCat(current.value().size(), " bytes") : "absent";
          break;
        case Compare::Target::kStoreRevision:
          break;
      }
    }
    if (!holds) {
      result.failed_compare = static_cast<int>(i);
      const std::string expected = c.target == Compare::Target::kValue
                                       ? absl::StrCat(c.value.size(), " bytes")
                                       : absl::StrCat(c.number);
      result.conflict = absl::StrCat(
          "policy store: ",
          c.target == Compare::Target::kStoreRevision ? "" : absl::StrCat("key ", Q(c.key), ": "),
          TargetName(c.target), " is ", found, ", expected ", OpName(c.op), " ", expected);
      return result;
    }
  }
  result.succeeded = true;

  const int64_t revision = revision_ + 1;
  const absl::Time lease_now = options_.lease_clock();
  ChangeSet changes;
  for (const TxnOp& op : request.ops) {
    if (op.type == TxnOp::Type::kDeletePrefix) {
      absl::Status scanned = db_->Scan(read, KeySelector::Prefix(op.key), [&](v1::KeyValue kv) {
        std::string key = kv.key();
        changes.changes[std::move(key)].prev = std::move(kv);
        return true;
      });
      if (!scanned.ok()) return scanned;
      continue;
    }
    absl::StatusOr<std::optional<v1::KeyValue>> prev = db_->Get(read, op.key);
    if (!prev.ok()) return prev.status();
    if (op.type == TxnOp::Type::kDelete) {
      if (prev->has_value()) changes.changes[op.key].prev = std::move(*prev);
      continue;
    }
    if (op.lease != 0 && !leases_.IsLive(op.lease, lease_now)) {
      return absl::NotFoundError(
          absl::StrCat("policy store: lease ", op.lease, " not found or expired"));
    }
    v1::KeyValue next;
    next.set_key(op.key);
    next.set_value(op.value);
    next.set_create_revision(prev->has_value() ? (*prev)->create_revision() : revision);
    next.set_mod_revision(revision);
    next.set_version(prev->has_value() ? (*prev)->version() + 1 : 1);
    next.set_lease(op.lease);
    ChangeSet::Change& change = changes.changes[op.key];
    change.prev = std::move(*prev);
    change.next = std::move(next);
  }
  if (changes.changes.empty()) return result;  // nothing to change: no revision

  v1::AuditRecord audit;
  audit.set_actor(request.audit.actor);
  audit.set_source(request.audit.source);
  audit.set_summary(request.audit.summary);
  audit.set_cause(v1::AUDIT_CAUSE_TXN);
  rocksdb::WriteBatch batch;
  absl::StatusOr<v1::AuditRecord> written = CommitRevision(*db_, &batch, changes, std::move(audit));
  if (!written.ok()) return written.status();
  result.changed = true;
  result.revision = revision_;
  result.audit = std::move(*written);
  return result;
}

absl::StatusOr<WatchId> EmbeddedPolicyStore::Watch(KeySelector keys, int64_t after_revision,
                                                   WatchCallback callback) {
  return hub_->Add(std::move(keys), after_revision, std::move(callback));
}

void EmbeddedPolicyStore::CancelWatch(WatchId id) { hub_->Cancel(id); }

absl::StatusOr<std::vector<WatchHub::Record>> EmbeddedPolicyStore::ReadLog(int64_t from,
                                                                           int64_t to) {
  absl::ReaderMutexLock lock(&db_mu_);
  if (db_ == nullptr) return absl::UnavailableError("policy store: database closed");
  Snapshot snapshot(db_->db.get());
  const rocksdb::ReadOptions read = snapshot.options();
  absl::StatusOr<v1::StoreMeta> meta = db_->ReadMeta(read);
  if (!meta.ok()) return meta.status();
  if (from <= meta->compact_revision()) return Compacted(from - 1, meta->compact_revision());
  std::vector<WatchHub::Record> records;
  absl::Status read_log =
      db_->ScanLog(read, from, std::min(to, meta->revision()),
                   /*reverse=*/false, [&](v1::RevisionRecord record) {
                     records.push_back(std::make_shared<v1::RevisionRecord>(std::move(record)));
                   });
  if (!read_log.ok()) return read_log;
  return records;
}

absl::StatusOr<std::vector<v1::AuditRecord>> EmbeddedPolicyStore::Audit(int64_t at_or_before,
                                                                        size_t limit) {
  if (at_or_before < 0) {
    return absl::InvalidArgumentError("policy store: audit at a negative revision");
  }
  absl::ReaderMutexLock lock(&db_mu_);
  if (db_ == nullptr) return absl::UnavailableError("policy store: database closed");
  Snapshot snapshot(db_->db.get());
  rocksdb::ReadOptions read = snapshot.options();
  absl::StatusOr<v1::StoreMeta> meta = db_->ReadMeta(read);
  if (!meta.ok()) return meta.status();
  const int64_t newest =
      at_or_before == 0 ? meta->revision() : std::min(at_or_before, meta->revision());
  std::vector<v1::AuditRecord> records;
  const std::string upper_key = psi::NumberKey(newest + 1);
  rocksdb::Slice upper(upper_key);
  read.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->db->NewIterator(read, db_->audit));
  for (it->SeekToLast(); it->Valid() && (limit == 0 || records.size() < limit); it->Prev()) {
    const int64_t revision = psi::ParseNumberKey(it->key().ToStringView()).value_or(-1);
    absl::StatusOr<v1::AuditRecord> record =
        ParseNumbered<v1::AuditRecord>(it->value(), "audit record", revision);
    if (!record.ok()) return record.status();
    records.push_back(std::move(*record));
  }
  if (!it->status().ok()) return psi::FromRocks(it->status(), "read audit");
  return records;
}

absl::StatusOr<LeaseInfo> EmbeddedPolicyStore::GrantLease(absl::Duration ttl) {
  if (ttl < options_.min_lease_ttl || ttl > options_.max_lease_ttl) {
    return absl::InvalidArgumentError(
        absl::StrCat("policy store: lease TTL ", absl::FormatDuration(ttl), " outside [",
                     absl::FormatDuration(options_.min_lease_ttl), ", ",
                     absl::FormatDuration(options_.max_lease_ttl), "]"));
  }
  const int64_t ttl_ms = absl::ToInt64Milliseconds(ttl);
  absl::MutexLock lock(&write_mu_);
  if (absl::Status reopened = ReopenIfNeeded(); !reopened.ok()) return reopened;
  absl::ReaderMutexLock db_lock(&db_mu_);
  if (db_ == nullptr) return absl::UnavailableError("policy store: database closed");
  const int64_t id = next_lease_id_;
  v1::Lease lease;
  lease.set_id(id);
  lease.set_ttl_ms(ttl_ms);
  *lease.mutable_granted_time() = ToProtoTimestamp(options_.wall_clock());
  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.Put(db_->lease, psi::NumberKey(id), lease.SerializeAsString());
  if (s.ok()) {
    s = batch.Put(db_->meta, psi::kMetaKey, MetaValue(revision_, compact_revision_, id + 1));
  }
  if (!s.ok()) return psi::FromRocks(s, "batch");
  if (absl::Status written = WriteSynced(*db_, "grant lease", &batch); !written.ok()) {
    return written;
  }
  next_lease_id_ = id + 1;
  LeaseInfo info;
  info.id = id;
  info.ttl = absl::Milliseconds(ttl_ms);
  info.remaining = info.ttl;
  leases_.Add(id, info.ttl, options_.lease_clock() + info.ttl);
  return info;
}

absl::StatusOr<absl::Duration> EmbeddedPolicyStore::KeepAlive(int64_t lease) {
  return leases_.KeepAlive(lease, options_.lease_clock());
}

absl::StatusOr<LeaseInfo> EmbeddedPolicyStore::LeaseTimeToLive(int64_t lease) {
  return leases_.Info(lease, options_.lease_clock());
}

absl::StatusOr<int64_t> EmbeddedPolicyStore::RevokeLease(int64_t lease, const AuditInfo& audit) {
  absl::MutexLock lock(&write_mu_);
  return RevokeLocked(lease, v1::AUDIT_CAUSE_LEASE_REVOKED, audit);
}

absl::StatusOr<int> EmbeddedPolicyStore::ExpireLeases(absl::Time now) {
  absl::MutexLock lock(&write_mu_);
  int revoked = 0;
  for (int64_t id : leases_.Expired(now)) {
    absl::StatusOr<int64_t> done = RevokeLocked(id, v1::AUDIT_CAUSE_LEASE_EXPIRED, {});
    if (!done.ok()) return done.status();
    ++revoked;
  }
  return revoked;
}

absl::StatusOr<int64_t> EmbeddedPolicyStore::RevokeLocked(int64_t lease, v1::AuditCause cause,
                                                          const AuditInfo& info) {
  if (absl::Status reopened = ReopenIfNeeded(); !reopened.ok()) return reopened;
  absl::StatusOr<LeaseInfo> known = leases_.Info(lease, options_.lease_clock());
  if (!known.ok()) return known.status();
  absl::ReaderMutexLock db_lock(&db_mu_);
  if (db_ == nullptr) return absl::UnavailableError("policy store: database closed");
  ChangeSet changes;
  for (const std::string& key : known->keys) {
    absl::StatusOr<std::optional<v1::KeyValue>> kv = db_->Get(rocksdb::ReadOptions(), key);
    if (!kv.ok()) return kv.status();
    if (kv->has_value() && (*kv)->lease() == lease) changes.changes[key].prev = std::move(*kv);
  }
  rocksdb::WriteBatch batch;
  if (rocksdb::Status s = batch.Delete(db_->lease, psi::NumberKey(lease)); !s.ok()) {
    return psi::FromRocks(s, "batch");
  }
  if (changes.changes.empty()) {
    if (absl::Status written = WriteSynced(*db_, "revoke lease", &batch); !written.ok()) {
      return written;
    }
  } else {
    v1::AuditRecord audit;
    audit.set_actor(info.actor);
    audit.set_source(info.source);
    audit.set_summary(
        !info.summary.empty() ? info.summary
        : cause == v1::AUDIT_CAUSE_LEASE_EXPIRED
            ? absl::StrCat("lease ", lease, " expired (TTL ", absl::FormatDuration(known->ttl), ")")
            : absl::StrCat("lease ", lease, " revoked"));
    audit.set_cause(cause);
    audit.set_lease(lease);
    absl::StatusOr<v1::AuditRecord> written =
        CommitRevision(*db_, &batch, changes, std::move(audit));
    if (!written.ok()) return written.status();
  }
  leases_.Remove(lease);
  return revision_;
}

absl::Status EmbeddedPolicyStore::Compact(int64_t revision) {
  absl::MutexLock lock(&write_mu_);
  if (revision > revision_) {
    return absl::InvalidArgumentError(absl::StrCat("policy store: cannot compact to revision ",
                                                   revision, ", the current revision is ",
                                                   revision_));
  }
  if (revision <= compact_revision_) return Compacted(revision, compact_revision_);
  if (absl::Status reopened = ReopenIfNeeded(); !reopened.ok()) return reopened;
  absl::ReaderMutexLock db_lock(&db_mu_);
  if (db_ == nullptr) return absl::UnavailableError("policy store: database closed");
  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.DeleteRange(db_->log, psi::NumberKey(0), psi::NumberKey(revision + 1));
  if (s.ok()) {
    s = batch.Put(db_->meta, psi::kMetaKey, MetaValue(revision_, revision, next_lease_id_));
  }
  if (!s.ok()) return psi::FromRocks(s, "batch");
  if (absl::Status written = WriteSynced(*db_, "compact", &batch); !written.ok()) return written;
  compact_revision_ = revision;
  hub_->SetCompacted(revision);
  return absl::OkStatus();
}

absl::StatusOr<StoreInfo> EmbeddedPolicyStore::Info() {
  absl::ReaderMutexLock lock(&db_mu_);
  if (db_ == nullptr) return absl::UnavailableError("policy store: database closed");
  absl::StatusOr<v1::StoreMeta> meta = db_->ReadMeta(rocksdb::ReadOptions());
  if (!meta.ok()) return meta.status();
  return StoreInfo{meta->revision(), meta->compact_revision()};
}

void EmbeddedPolicyStore::LeaseTimerLoop() {
  bool failing = false;
  for (;;) {
    {
      absl::MutexLock lock(&timer_mu_);
      if (timer_mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.lease_check_interval)) {
        return;
      }
    }
    absl::StatusOr<int> expired = ExpireLeases(options_.lease_clock());
    if (!expired.ok() && !failing) {  // logged once per run of failures
      log::LogEvent("policy_lease_expiry_failed", log::Level::kWarn)
          .Add("error", std::string(expired.status().message()))
          .Emit();
    }
    failing = !expired.ok();
  }
}

}  // namespace postern::control
