// How Postern's two RocksDB stores (the spool in each worker, the policy
// store in posternd) want RocksDB to behave when a disk fills or fails:
//   - no automatic error recovery: after a failed write the owning store
//     closes and reopens the database itself, so a write racing with a
//     background recovery can never reach the failed WAL file;
//   - the info log on stderr (the process's log), warnings and errors only,
//     instead of a LOG file on the store's own disk: RocksDB 7.8 (Debian's
//     builds keep assertions) aborts on the log line after a failed one, which
//     would turn a full disk into a crash.
#ifndef POSTERN_COMMON_ROCKSDB_HOOKS_H_
#define POSTERN_COMMON_ROCKSDB_HOOKS_H_

#include <rocksdb/env.h>
#include <rocksdb/listener.h>

#include <memory>
#include <string_view>

namespace postern {

// For DBOptions::listeners.
std::shared_ptr<rocksdb::EventListener> NoAutoRecoveryListener();
// For DBOptions::info_log; each line starts with "<prefix>: ".
std::shared_ptr<rocksdb::Logger> StderrInfoLog(std::string_view prefix);

}  // namespace postern

#endif  // POSTERN_COMMON_ROCKSDB_HOOKS_H_
