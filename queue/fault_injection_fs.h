// FaultInjectionFileSystem: a rocksdb::FileSystem for tests that fails or
// stalls writes to the write-ahead log on demand, to test the spool's
// durability and group commit the way LevelDB's fault_injection_test does.
//
// Only WAL files ("*.log") are affected; SST, blob and MANIFEST files pass
// through. Wrap it in an Env with rocksdb::NewCompositeEnv and hand that to
// SpoolOptions::env.
//
// Threading: thread-safe; the controls are called by the test thread while
// RocksDB's threads write.
#ifndef POSTERN_QUEUE_FAULT_INJECTION_FS_H_
#define POSTERN_QUEUE_FAULT_INJECTION_FS_H_

#include <rocksdb/file_system.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace postern::queue {

class FaultInjectionFileSystem : public rocksdb::FileSystemWrapper {
 public:
  enum class Fault {
    kNone,
    kNoSpace,      // fail with ENOSPC, nothing written
    kTornNoSpace,  // write the first half of the data, then fail with ENOSPC
    kIOError,      // fail with a plain I/O error (EIO), nothing written
  };

  explicit FaultInjectionFileSystem(
      std::shared_ptr<rocksdb::FileSystem> base = rocksdb::FileSystem::Default());

  const char* Name() const override { return "PosternFaultInjectionFileSystem"; }

  // Faults for every later WAL Append / WAL Sync, until set back to kNone.
  void SetAppendFault(Fault fault) ABSL_LOCKS_EXCLUDED(mu_);
  void SetSyncFault(Fault fault) ABSL_LOCKS_EXCLUDED(mu_);

  // While held, WAL syncs wait (inside the syncing thread) until released.
  void HoldSyncs() ABSL_LOCKS_EXCLUDED(mu_);
  void ReleaseSyncs() ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until at least `n` syncs are waiting on the hold; false on timeout.
  bool AwaitHeldSyncs(int n, absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

  int64_t wal_syncs() const ABSL_LOCKS_EXCLUDED(mu_);  // completed WAL syncs

  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(const std::string& name, const std::string& old_name,
                                      const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override;

 private:
  class WalFile;

  void Wrap(const std::string& name, std::unique_ptr<rocksdb::FSWritableFile>* file);
  Fault append_fault() const ABSL_LOCKS_EXCLUDED(mu_);
  // Called by a WAL file before syncing: waits while held, returns the fault.
  Fault BeforeSync() ABSL_LOCKS_EXCLUDED(mu_);
  void AfterSync() ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  Fault append_fault_ ABSL_GUARDED_BY(mu_) = Fault::kNone;
  Fault sync_fault_ ABSL_GUARDED_BY(mu_) = Fault::kNone;
  bool hold_syncs_ ABSL_GUARDED_BY(mu_) = false;
  int held_syncs_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t wal_syncs_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace postern::queue

#endif  // POSTERN_QUEUE_FAULT_INJECTION_FS_H_
