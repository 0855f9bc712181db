#include "control/policy_store/rocksdb_support.h"

#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/table.h>

#include <cstdarg>
#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/absl_compat.h"
#include "common/rocksdb_hooks.h"

namespace postern::control::policy_store_internal {

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string message = absl::StrCat("policy store: ", Absl(what), ": ", s.ToString());
  if (s.IsNoSpace()) return absl::ResourceExhaustedError(message);
  if (s.IsCorruption()) return absl::DataLossError(message);
  if (s.IsNotFound()) return absl::NotFoundError(message);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(message);
  if (s.IsNotSupported()) return absl::FailedPreconditionError(message);
  if (s.IsIOError() || s.IsBusy() || s.IsTryAgain() || s.IsIncomplete() || s.IsTimedOut()) {
    return absl::UnavailableError(message);
  }
  return absl::InternalError(message);
}

std::string NumberKey(int64_t n) {
  std::string key(8, '\0');
  uint64_t v = static_cast<uint64_t>(n);
  for (int i = 7; i >= 0; --i) {
    key[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return key;
}

std::optional<int64_t> ParseNumberKey(std::string_view key) {
  if (key.size() != 8) return std::nullopt;
  uint64_t v = 0;
  for (char c : key) v = (v << 8) | static_cast<uint8_t>(c);
  return static_cast<int64_t>(v);
}

std::optional<std::string> PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    const auto last = static_cast<uint8_t>(end.back());
    if (last != 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::nullopt;
}

rocksdb::DBOptions MakeDbOptions(rocksdb::Env* env) {
  rocksdb::DBOptions db;
  db.create_if_missing = true;
  db.create_missing_column_families = true;
  db.env = env != nullptr ? env : rocksdb::Env::Default();
  // Only synced, complete batches were acknowledged; a torn tail after a
  // crash is an unacknowledged one. Replay stops there, drops nothing before.
  db.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  // Five families share one WAL; the small ones would keep old WAL files
  // alive for long without this.
  db.max_total_wal_size = 64ull << 20;
  db.max_background_jobs = 2;
  db.avoid_unnecessary_blocking_io = true;
  db.listeners.push_back(NoAutoRecoveryListener());
  db.max_bgerror_resume_count = 0;
  db.info_log = StderrInfoLog("rocksdb(policy)");
  return db;
}

std::vector<rocksdb::ColumnFamilyDescriptor> MakeColumnFamilies() {
  rocksdb::BlockBasedTableOptions table_options;
  table_options.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  std::shared_ptr<rocksdb::TableFactory> table(rocksdb::NewBlockBasedTableFactory(table_options));

  // Small, rarely written data: small memtables, level compaction.
  auto family = [&](size_t write_buffer) {
    rocksdb::ColumnFamilyOptions options;
    options.write_buffer_size = write_buffer;
    options.max_write_buffer_number = 2;
    options.level_compaction_dynamic_level_bytes = true;
    options.table_factory = table;
    return options;
  };
  return {
      rocksdb::ColumnFamilyDescriptor(rocksdb::kDefaultColumnFamilyName, family(1 << 20)),
      rocksdb::ColumnFamilyDescriptor(kKvFamily, family(16 << 20)),
      rocksdb::ColumnFamilyDescriptor(kLogFamily, family(16 << 20)),
      rocksdb::ColumnFamilyDescriptor(kAuditFamily, family(4 << 20)),
      rocksdb::ColumnFamilyDescriptor(kLeaseFamily, family(1 << 20)),
      rocksdb::ColumnFamilyDescriptor(kMetaFamily, family(1 << 20)),
  };
}

}  // namespace postern::control::policy_store_internal
