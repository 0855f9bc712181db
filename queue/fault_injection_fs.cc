#include "queue/fault_injection_fs.h"

#include <utility>

#include "absl/strings/match.h"

namespace postern::queue {
namespace {

rocksdb::IOStatus FaultStatus(FaultInjectionFileSystem::Fault fault) {
  switch (fault) {
    case FaultInjectionFileSystem::Fault::kNone:
      return rocksdb::IOStatus::OK();
    case FaultInjectionFileSystem::Fault::kNoSpace:
    case FaultInjectionFileSystem::Fault::kTornNoSpace:
      return rocksdb::IOStatus::NoSpace("injected fault");
    case FaultInjectionFileSystem::Fault::kIOError:
      return rocksdb::IOStatus::IOError("injected fault");
  }
  return rocksdb::IOStatus::IOError("unknown injected fault");
}

}  // namespace

class FaultInjectionFileSystem::WalFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  WalFile(FaultInjectionFileSystem* fs, std::unique_ptr<rocksdb::FSWritableFile> file)
      : rocksdb::FSWritableFileOwnerWrapper(std::move(file)), fs_(fs) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    const Fault fault = fs_->append_fault();
    if (fault == Fault::kNone) return target()->Append(data, options, dbg);
    if (fault == Fault::kTornNoSpace && data.size() > 1) {
      rocksdb::Slice half(data.data(), data.size() / 2);
      target()->Append(half, options, dbg).PermitUncheckedError();
      // Make the torn half reach the file, as a crash after writeback would.
      target()->Flush(options, dbg).PermitUncheckedError();
    }
    return FaultStatus(fault);
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& /*info*/,
                           rocksdb::IODebugContext* dbg) override {
    return Append(data, options, dbg);
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    return SyncWith(&rocksdb::FSWritableFile::Sync, options, dbg);
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    return SyncWith(&rocksdb::FSWritableFile::Fsync, options, dbg);
  }

 private:
  using SyncFn = rocksdb::IOStatus (rocksdb::FSWritableFile::*)(const rocksdb::IOOptions&,
                                                                rocksdb::IODebugContext*);
  rocksdb::IOStatus SyncWith(SyncFn fn, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) {
    const Fault fault = fs_->BeforeSync();
    if (fault != Fault::kNone) return FaultStatus(fault);
    rocksdb::IOStatus s = (target()->*fn)(options, dbg);
    fs_->AfterSync();
    return s;
  }

  FaultInjectionFileSystem* fs_;
};

FaultInjectionFileSystem::FaultInjectionFileSystem(std::shared_ptr<rocksdb::FileSystem> base)
    : rocksdb::FileSystemWrapper(std::move(base)) {}

void FaultInjectionFileSystem::SetAppendFault(Fault fault) {
  absl::MutexLock lock(&mu_);
  append_fault_ = fault;
}

void FaultInjectionFileSystem::SetSyncFault(Fault fault) {
  absl::MutexLock lock(&mu_);
  sync_fault_ = fault;
}

void FaultInjectionFileSystem::HoldSyncs() {
  absl::MutexLock lock(&mu_);
  hold_syncs_ = true;
}

void FaultInjectionFileSystem::ReleaseSyncs() {
  absl::MutexLock lock(&mu_);
  hold_syncs_ = false;
}

bool FaultInjectionFileSystem::AwaitHeldSyncs(int n, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return held_syncs_ >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

int64_t FaultInjectionFileSystem::wal_syncs() const {
  absl::MutexLock lock(&mu_);
  return wal_syncs_;
}

FaultInjectionFileSystem::Fault FaultInjectionFileSystem::append_fault() const {
  absl::MutexLock lock(&mu_);
  return append_fault_;
}

FaultInjectionFileSystem::Fault FaultInjectionFileSystem::BeforeSync() {
  absl::MutexLock lock(&mu_);
  ++held_syncs_;
  auto released = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !hold_syncs_; };
  mu_.Await(absl::Condition(&released));
  --held_syncs_;
  return sync_fault_;
}

void FaultInjectionFileSystem::AfterSync() {
  absl::MutexLock lock(&mu_);
  ++wal_syncs_;
}

void FaultInjectionFileSystem::Wrap(const std::string& name,
                                    std::unique_ptr<rocksdb::FSWritableFile>* file) {
  if (absl::EndsWith(name, ".log")) *file = std::make_unique<WalFile>(this, std::move(*file));
}

rocksdb::IOStatus FaultInjectionFileSystem::NewWritableFile(
    const std::string& name, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  rocksdb::IOStatus s = target()->NewWritableFile(name, options, result, dbg);
  if (s.ok()) Wrap(name, result);
  return s;
}

rocksdb::IOStatus FaultInjectionFileSystem::ReopenWritableFile(
    const std::string& name, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  rocksdb::IOStatus s = target()->ReopenWritableFile(name, options, result, dbg);
  if (s.ok()) Wrap(name, result);
  return s;
}

rocksdb::IOStatus FaultInjectionFileSystem::ReuseWritableFile(
    const std::string& name, const std::string& old_name, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  rocksdb::IOStatus s = target()->ReuseWritableFile(name, old_name, options, result, dbg);
  if (s.ok()) Wrap(name, result);
  return s;
}

}  // namespace postern::queue
