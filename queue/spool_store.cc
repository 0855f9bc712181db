#include "queue/spool_store.h"

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/table_properties_collectors.h>
#include <rocksdb/write_batch.h>
#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/absl_compat.h"
#include "common/rocksdb_hooks.h"
#include "queue/queue_id.h"

namespace postern::queue {
namespace {

constexpr char kMetaFamily[] = "meta";
constexpr char kScheduleFamily[] = "schedule";
constexpr char kBodyFamily[] = "body";
// Envelopes read per lock hold in ForEachEnvelope.
constexpr size_t kWalkChunk = 512;

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string message = absl::StrCat("spool ", Absl(what), ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(message);
  if (s.IsNoSpace()) return absl::ResourceExhaustedError(message);
  if (s.IsCorruption()) return absl::DataLossError(message);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(message);
  if (s.IsNotSupported()) return absl::FailedPreconditionError(message);
  if (s.IsIOError() || s.IsBusy() || s.IsTryAgain() || s.IsIncomplete() || s.IsTimedOut()) {
    return absl::UnavailableError(message);
  }
  return absl::InternalError(message);
}

rocksdb::DBOptions MakeDbOptions(const SpoolOptions& options) {
  rocksdb::DBOptions db;
  db.create_if_missing = true;
  db.create_missing_column_families = true;
  db.env = options.env != nullptr ? options.env : rocksdb::Env::Default();
  // Only synced, complete batches were acknowledged; a torn tail after a
  // crash is an unacknowledged batch. Stop replay there, drop nothing before.
  // (This mode also makes RocksDB 7.8 ignore recycle_log_file_num.)
  db.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  db.max_total_wal_size = options.max_total_wal_size;
  db.max_background_jobs = options.max_background_jobs;
  db.bytes_per_sync = 1 << 20;  // smooth writeback of SST and blob files
  // Obsolete files are deleted by a background job, not by the writer.
  db.avoid_unnecessary_blocking_io = true;
  db.listeners.push_back(NoAutoRecoveryListener());
  db.max_bgerror_resume_count = 0;
  db.keep_log_file_num = 4;
  db.max_log_file_size = 8 << 20;
  db.info_log = StderrInfoLog("rocksdb");
  return db;
}

std::shared_ptr<rocksdb::TableFactory> MakeTableFactory() {
  rocksdb::BlockBasedTableOptions table;
  // Point reads (ReadEnvelope, ReadBody) skip SSTs without the key.
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  return std::shared_ptr<rocksdb::TableFactory>(rocksdb::NewBlockBasedTableFactory(table));
}

std::vector<rocksdb::ColumnFamilyDescriptor> MakeColumnFamilies(const SpoolOptions& options) {
  auto table = MakeTableFactory();
  // FIFO with churn: the head of the key space is deleted as mail leaves.
  // Files with many tombstones get compacted early so walks stay cheap.
  auto tombstones = rocksdb::NewCompactOnDeletionCollectorFactory(128, 64);

  rocksdb::ColumnFamilyOptions meta;
  meta.write_buffer_size = options.meta_write_buffer_size;
  meta.max_write_buffer_number = 3;
  meta.compression = rocksdb::kNoCompression;
  meta.level_compaction_dynamic_level_bytes = true;
  meta.table_factory = table;
  meta.table_properties_collector_factories.push_back(tombstones);

  rocksdb::ColumnFamilyOptions body;
  body.write_buffer_size = options.body_write_buffer_size;
  body.max_write_buffer_number = 3;
  body.compression = rocksdb::kNoCompression;
  body.level_compaction_dynamic_level_bytes = true;
  body.table_factory = table;
  body.table_properties_collector_factories.push_back(tombstones);
  // Integrated BlobDB: large bodies are written once to a blob file at flush
  // and never rewritten by compaction, which moves only small blob indexes.
  body.enable_blob_files = true;
  body.min_blob_size = options.min_blob_size;
  body.blob_file_size = options.blob_file_size;
  body.blob_compression_type = rocksdb::kNoCompression;
  // Relocate the few long-deferred bodies out of the oldest blob files so
  // those files can be deleted.
  body.enable_blob_garbage_collection = true;
  body.blob_garbage_collection_age_cutoff = 0.25;

  // The due-time index: tiny keys, no values, read in key ranges.
  rocksdb::ColumnFamilyOptions schedule;
  schedule.write_buffer_size = 4ull << 20;
  schedule.compression = rocksdb::kNoCompression;
  schedule.level_compaction_dynamic_level_bytes = true;
  schedule.table_properties_collector_factories.push_back(tombstones);

  rocksdb::ColumnFamilyOptions unused;  // "default": RocksDB requires it; empty
  return {
      rocksdb::ColumnFamilyDescriptor(rocksdb::kDefaultColumnFamilyName, unused),
      rocksdb::ColumnFamilyDescriptor(kMetaFamily, meta),
      rocksdb::ColumnFamilyDescriptor(kBodyFamily, body),
      rocksdb::ColumnFamilyDescriptor(kScheduleFamily, schedule),
  };
}

absl::Status ValidateId(std::string_view id) {
  if (QueueIdGenerator::IsValid(id)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("spool: malformed queue id \"", Absl(id), "\""));
}

}  // namespace

struct SpoolStore::Db {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // default, meta, body, schedule
  rocksdb::ColumnFamilyHandle* meta = nullptr;
  rocksdb::ColumnFamilyHandle* body = nullptr;
  rocksdb::ColumnFamilyHandle* schedule = nullptr;

  ~Db() {
    if (db == nullptr) return;
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    db->Close().PermitUncheckedError();  // errors were reported by the writes
  }

  static absl::StatusOr<std::unique_ptr<Db>> Open(const std::string& dir,
                                                  const SpoolOptions& options,
                                                  const std::string& secondary_dir) {
    rocksdb::DBOptions db_options = MakeDbOptions(options);
    auto families = MakeColumnFamilies(options);
    auto result = std::make_unique<Db>();
    rocksdb::DB* raw = nullptr;
    rocksdb::Status s;
    if (secondary_dir.empty()) {
      s = rocksdb::DB::Open(db_options, dir, families, &result->handles, &raw);
    } else {
      db_options.create_if_missing = false;
      db_options.create_missing_column_families = false;
      db_options.max_open_files = -1;  // required by secondaries
      s = rocksdb::DB::OpenAsSecondary(db_options, dir, secondary_dir, families, &result->handles,
                                       &raw);
    }
    if (!s.ok()) return FromRocks(s, absl::StrCat("open ", dir));
    result->db.reset(raw);
    result->meta = result->handles[1];
    result->body = result->handles[2];
    result->schedule = result->handles[3];
    return result;
  }
};

SpoolStore::SpoolStore(std::string dir, const SpoolOptions& options, bool read_only,
                       std::string secondary_dir, std::unique_ptr<Db> db)
    : dir_(std::move(dir)),
      options_(options),
      read_only_(read_only),
      secondary_dir_(std::move(secondary_dir)),
      db_(std::move(db)) {}

SpoolStore::~SpoolStore() {
  {
    absl::MutexLock lock(&mu_);
    db_.reset();
  }
  if (!secondary_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(secondary_dir_, ec);
  }
}

absl::StatusOr<std::unique_ptr<SpoolStore>> SpoolStore::Open(const std::string& dir,
                                                             const SpoolOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("spool: cannot create ", dir, ": ", ec.message()));
  }
  auto db = Db::Open(dir, options, "");
  if (!db.ok()) return db.status();
  return std::unique_ptr<SpoolStore>(new SpoolStore(dir, options, false, "", std::move(*db)));
}

absl::StatusOr<std::unique_ptr<SpoolStore>> SpoolStore::OpenReadOnly(const std::string& dir,
                                                                     const SpoolOptions& options) {
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::path(dir) / "CURRENT", ec)) {
    return absl::NotFoundError(absl::StrCat("spool: no spool database in ", dir));
  }
  const char* tmp = getenv("TMPDIR");
  std::string pattern =
      absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/postern-spool-reader-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("spool: cannot create ", pattern, ": ", std::strerror(errno)));
  }
  auto db = Db::Open(dir, options, pattern);
  if (!db.ok()) {
    std::filesystem::remove_all(pattern, ec);
    return db.status();
  }
  return std::unique_ptr<SpoolStore>(new SpoolStore(dir, options, true, pattern, std::move(*db)));
}

absl::Status SpoolStore::ReopenIfNeeded(bool for_write) {
  if (!reopen_needed_.load(std::memory_order_acquire)) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  if (!reopen_needed_.load(std::memory_order_acquire)) return absl::OkStatus();  // done meanwhile
  if (!for_write && db_ != nullptr) return absl::OkStatus();                     // reads still work
  const absl::Time now = absl::Now();
  if (now < next_reopen_) {
    absl::MutexLock error_lock(&error_mu_);
    return absl::UnavailableError(
        absl::StrCat("spool: waiting to reopen after a write error: ", last_error_));
  }
  next_reopen_ = now + options_.min_reopen_interval;
  db_.reset();  // the LOCK file allows one instance at a time
  auto db = Db::Open(dir_, options_, "");
  if (!db.ok()) {
    absl::MutexLock error_lock(&error_mu_);
    last_error_ = std::string(db.status().message());
    return absl::UnavailableError(
        absl::StrCat("spool: reopen after a write error failed: ", db.status().message()));
  }
  db_ = std::move(*db);
  reopen_needed_.store(false, std::memory_order_release);
  return absl::OkStatus();
}

template <typename Fill>
absl::Status SpoolStore::Commit(const char* what, bool sync, Fill fill) {
  if (read_only_) return absl::FailedPreconditionError("spool: opened read-only");
  if (absl::Status reopened = ReopenIfNeeded(true); !reopened.ok()) return reopened;
  absl::ReaderMutexLock lock(&mu_);
  if (db_ == nullptr) return absl::UnavailableError("spool: database closed");
  rocksdb::WriteBatch batch;
  if (absl::Status filled = fill(*db_, &batch); !filled.ok()) return filled;
  rocksdb::WriteOptions write_options;
  write_options.sync = sync;
  rocksdb::Status s = db_->db->Write(write_options, &batch);
  if (!s.ok() && !s.IsInvalidArgument()) {
    // Any other failure may have left RocksDB in its error state.
    absl::MutexLock error_lock(&error_mu_);
    last_error_ = s.ToString();
    reopen_needed_.store(true, std::memory_order_release);
  }
  return FromRocks(s, what);
}

absl::Status SpoolStore::ValidateRecord(const SpoolRecord& record) {
  const std::string& id = record.envelope.queue_id();
  if (absl::Status valid = ValidateId(id); !valid.ok()) return valid;
  if (record.envelope.body_size() != record.body.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("spool: ", id, ": body_size ", record.envelope.body_size(),
                     " but the body has ", record.body.size(), " bytes"));
  }
  return absl::OkStatus();
}

absl::Status SpoolStore::WriteBatch(const std::vector<SpoolRecord>& records) {
  return Apply(records, {});
}

absl::Status SpoolStore::Apply(const std::vector<SpoolRecord>& records,
                               const std::vector<SpoolMutation>& mutations) {
  if (records.empty() && mutations.empty()) return absl::OkStatus();
  std::vector<std::string_view> ids;
  ids.reserve(records.size());
  for (const SpoolRecord& record : records) {
    if (absl::Status valid = ValidateRecord(record); !valid.ok()) return valid;
    ids.push_back(record.envelope.queue_id());
  }
  for (const SpoolMutation& mutation : mutations) {
    if (absl::Status valid = ValidateId(mutation.envelope.queue_id()); !valid.ok()) return valid;
  }
  std::sort(ids.begin(), ids.end());
  if (auto dup = std::adjacent_find(ids.begin(), ids.end()); dup != ids.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("spool: queue id ", Absl(*dup), " twice in a batch"));
  }
  // New mail is acknowledged only once synced; so are changes that ask for
  // it. RocksDB's WAL is one sequential file, so syncing it also makes any
  // earlier unsynced batch durable.
  const bool sync = !records.empty() || std::any_of(mutations.begin(), mutations.end(),
                                                    [](const SpoolMutation& m) { return m.sync; });
  return Commit("write", sync, [&](Db& db, rocksdb::WriteBatch* batch) -> absl::Status {
    std::string value;
    for (const SpoolRecord& record : records) {
      const std::string& id = record.envelope.queue_id();
      value.clear();
      if (!record.envelope.SerializeToString(&value)) {
        return absl::InternalError(absl::StrCat("spool: cannot serialize envelope ", id));
      }
      rocksdb::Status s = batch->Put(db.meta, id, value);
      if (s.ok()) s = batch->Put(db.body, id, record.body);
      if (s.ok() && IsScheduled(record.envelope)) {
        s = batch->Put(db.schedule, ScheduleKey(DueMs(record.envelope), id), "");
      }
      if (!s.ok()) return FromRocks(s, "batch");
    }
    for (const SpoolMutation& mutation : mutations) {
      const std::string& id = mutation.envelope.queue_id();
      const rocksdb::Slice key(id.data(), id.size());
      rocksdb::Status s;
      if (mutation.old_due_ms >= 0) {
        s = batch->Delete(db.schedule, ScheduleKey(mutation.old_due_ms, id));
      }
      if (!s.ok()) return FromRocks(s, "batch");
      if (mutation.remove) {
        // Envelopes may be rewritten (recipient states): plain Delete. Bodies
        // are written exactly once per id: SingleDelete, which vanishes
        // together with its Put at the first compaction or flush that sees
        // both (FORMAT.md).
        s = batch->Delete(db.meta, key);
        if (s.ok()) s = batch->SingleDelete(db.body, key);
      } else {
        value.clear();
        if (!mutation.envelope.SerializeToString(&value)) {
          return absl::InternalError(absl::StrCat("spool: cannot serialize envelope ", id));
        }
        s = batch->Put(db.meta, key, value);
        if (s.ok() && IsScheduled(mutation.envelope)) {
          s = batch->Put(db.schedule, ScheduleKey(DueMs(mutation.envelope), id), "");
        }
      }
      if (!s.ok()) return FromRocks(s, "batch");
    }
    return absl::OkStatus();
  });
}

absl::Status SpoolStore::Remove(std::string_view id, int64_t due_ms) {
  if (absl::Status valid = ValidateId(id); !valid.ok()) return valid;
  SpoolMutation mutation;
  mutation.envelope.set_queue_id(std::string(id));
  mutation.remove = true;
  mutation.old_due_ms = due_ms;
  return Apply({}, {mutation});
}

std::string SpoolStore::ScheduleKey(int64_t due_ms, std::string_view id) {
  std::string key(8, '\0');
  // Big-endian, so byte order is time order; negative times clamp to 0.
  uint64_t v = due_ms < 0 ? 0 : static_cast<uint64_t>(due_ms);
  for (int i = 7; i >= 0; --i) {
    key[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  key.append(id);
  return key;
}

bool SpoolStore::IsScheduled(const v1::Envelope& envelope) {
  return envelope.has_schedule() && envelope.schedule().has_next_attempt() &&
         !envelope.schedule().held();
}

int64_t SpoolStore::DueMs(const v1::Envelope& envelope) {
  const auto& t = envelope.schedule().next_attempt();
  return t.seconds() * 1000 + t.nanos() / 1000000;
}

absl::StatusOr<std::vector<ScheduleEntry>> SpoolStore::ScanSchedule(int64_t from_ms, int64_t to_ms,
                                                                    size_t limit) {
  std::vector<ScheduleEntry> entries;
  if (to_ms <= from_ms) return entries;
  if (absl::Status reopened = ReopenIfNeeded(false); !reopened.ok()) return reopened;
  absl::ReaderMutexLock lock(&mu_);
  if (db_ == nullptr) return absl::UnavailableError("spool: database closed");
  // Both bounds are set, so the iterator never looks at (or wades through the
  // tombstones of) keys outside the window: deletes pile up at the head of
  // the index, behind the scheduler's cursor (FORMAT.md, "Tombstones").
  const std::string lower = ScheduleKey(from_ms, "");
  const std::string upper = ScheduleKey(to_ms, "");
  rocksdb::Slice lower_slice(lower), upper_slice(upper);
  rocksdb::ReadOptions read_options;
  read_options.iterate_lower_bound = &lower_slice;
  read_options.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->db->NewIterator(read_options, db_->schedule));
  for (it->Seek(lower_slice); it->Valid() && entries.size() < limit; it->Next()) {
    const rocksdb::Slice key = it->key();
    if (key.size() != 8 + QueueIdGenerator::kLength) continue;  // not ours: skip
    uint64_t due = 0;
    for (int i = 0; i < 8; ++i) due = (due << 8) | static_cast<uint8_t>(key[i]);
    entries.push_back({static_cast<int64_t>(due), std::string(key.data() + 8, key.size() - 8)});
  }
  if (!it->status().ok()) return FromRocks(it->status(), "scan schedule");
  return entries;
}

absl::Status SpoolStore::CompactSchedule() {
  if (read_only_) return absl::OkStatus();
  absl::ReaderMutexLock lock(&mu_);
  if (db_ == nullptr) return absl::UnavailableError("spool: database closed");
  rocksdb::CompactRangeOptions options;
  // A lone file is otherwise moved to the bottom level as it is, tombstones
  // and all; force the rewrite that drops them.
  options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  return FromRocks(db_->db->CompactRange(options, db_->schedule, nullptr, nullptr),
                   "compact schedule");
}

absl::StatusOr<v1::Envelope> SpoolStore::ReadEnvelope(std::string_view id) {
  if (absl::Status valid = ValidateId(id); !valid.ok()) return valid;
  if (absl::Status reopened = ReopenIfNeeded(false); !reopened.ok()) return reopened;
  absl::ReaderMutexLock lock(&mu_);
  if (db_ == nullptr) return absl::UnavailableError("spool: database closed");
  rocksdb::PinnableSlice value;  // pins RocksDB memory: must die before the lock
  rocksdb::Status s =
      db_->db->Get(rocksdb::ReadOptions(), db_->meta, rocksdb::Slice(id.data(), id.size()), &value);
  if (!s.ok()) return FromRocks(s, absl::StrCat("read envelope ", Absl(id)));
  v1::Envelope envelope;
  if (!envelope.ParseFromArray(value.data(), static_cast<int>(value.size())) ||
      envelope.queue_id() != id) {
    return absl::DataLossError(absl::StrCat("spool: envelope ", Absl(id), " is corrupt"));
  }
  return envelope;
}

absl::StatusOr<std::string> SpoolStore::ReadBody(std::string_view id) {
  if (absl::Status valid = ValidateId(id); !valid.ok()) return valid;
  if (absl::Status reopened = ReopenIfNeeded(false); !reopened.ok()) return reopened;
  std::string body;
  absl::ReaderMutexLock lock(&mu_);
  if (db_ == nullptr) return absl::UnavailableError("spool: database closed");
  rocksdb::Status s =
      db_->db->Get(rocksdb::ReadOptions(), db_->body, rocksdb::Slice(id.data(), id.size()), &body);
  if (!s.ok()) return FromRocks(s, absl::StrCat("read body ", Absl(id)));
  return body;
}

absl::Status SpoolStore::ForEachEnvelope(EnvelopeVisitor fn,
                                         std::vector<std::string>* corrupt_ids) {
  std::string cursor;  // last key visited
  bool started = false;
  for (;;) {
    std::vector<std::pair<std::string, std::string>> chunk;
    if (absl::Status reopened = ReopenIfNeeded(false); !reopened.ok()) return reopened;
    {
      absl::ReaderMutexLock lock(&mu_);
      if (db_ == nullptr) return absl::UnavailableError("spool: database closed");
      std::unique_ptr<rocksdb::Iterator> it(
          db_->db->NewIterator(rocksdb::ReadOptions(), db_->meta));
      if (!started) {
        it->SeekToFirst();
      } else {
        it->Seek(cursor);
        if (it->Valid() && it->key() == cursor) it->Next();
      }
      for (; it->Valid() && chunk.size() < kWalkChunk; it->Next()) {
        chunk.emplace_back(it->key().ToString(), it->value().ToString());
      }
      if (!it->status().ok()) return FromRocks(it->status(), "walk envelopes");
    }
    // The callback runs without the lock: it may call back into the store.
    for (const auto& [key, value] : chunk) {
      v1::Envelope envelope;
      if (!QueueIdGenerator::IsValid(key) || !envelope.ParseFromString(value) ||
          envelope.queue_id() != key) {
        if (corrupt_ids != nullptr) corrupt_ids->push_back(key);
        continue;
      }
      if (absl::Status s = fn(envelope); !s.ok()) return s;
    }
    if (chunk.size() < kWalkChunk) return absl::OkStatus();
    cursor = chunk.back().first;
    started = true;
  }
}

std::string SpoolStore::LastId() {
  if (!ReopenIfNeeded(false).ok()) return "";
  absl::ReaderMutexLock lock(&mu_);
  if (db_ == nullptr) return "";
  std::unique_ptr<rocksdb::Iterator> it(db_->db->NewIterator(rocksdb::ReadOptions(), db_->meta));
  // Skips keys that are not ids (corrupt) so AdvancePast gets a real one.
  for (it->SeekToLast(); it->Valid(); it->Prev()) {
    if (QueueIdGenerator::IsValid(it->key().ToStringView())) return it->key().ToString();
  }
  return "";
}

}  // namespace postern::queue
