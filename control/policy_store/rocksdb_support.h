// The RocksDB pieces of the embedded policy store that are not the store
// itself: status mapping, the fixed-width revision keys, prefix bounds, and
// the database options (FORMAT.md says why each is set).
#ifndef POSTERN_CONTROL_POLICY_STORE_ROCKSDB_SUPPORT_H_
#define POSTERN_CONTROL_POLICY_STORE_ROCKSDB_SUPPORT_H_

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/status.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace postern::control::policy_store_internal {

// The column families, in the order the store opens them.
inline constexpr char kKvFamily[] = "kv";
inline constexpr char kLogFamily[] = "log";
inline constexpr char kAuditFamily[] = "audit";
inline constexpr char kLeaseFamily[] = "lease";
inline constexpr char kMetaFamily[] = "meta";
// The one key of the meta family.
inline constexpr char kMetaKey[] = "meta";

// RocksDB's status as absl's: kResourceExhausted for a full disk,
// kUnavailable for other I/O errors, kDataLoss for corruption.
absl::Status FromRocks(const rocksdb::Status& s, std::string_view what);

// 8 bytes big-endian, so byte order is numeric order (log, audit, lease ids).
std::string NumberKey(int64_t n);
// The number a NumberKey holds; nullopt when `key` is not 8 bytes.
std::optional<int64_t> ParseNumberKey(std::string_view key);

// The first key after every key that starts with `prefix`; nullopt when
// there is none (the prefix is empty or all 0xff).
std::optional<std::string> PrefixEnd(std::string_view prefix);

rocksdb::DBOptions MakeDbOptions(rocksdb::Env* env);
std::vector<rocksdb::ColumnFamilyDescriptor> MakeColumnFamilies();

}  // namespace postern::control::policy_store_internal

#endif  // POSTERN_CONTROL_POLICY_STORE_ROCKSDB_SUPPORT_H_
