// DataDirLock: one posternd per data dir. posternd takes it before it
// touches anything in the data dir (certificates, admin socket, spool,
// workers); a second posternd on the same dir fails at once and is told the
// holder's pid.
//
// The lock is flock(LOCK_EX | LOCK_NB) on <data_dir>/posternd.pid, a file
// that holds the holder's pid in decimal and a newline. The kernel drops the
// lock when the holder's file description closes, that is when posternd
// exits or is killed (kill -9 included), so a restart after a crash needs no
// cleanup; the file stays and its pid is overwritten by the next holder. The
// descriptor is O_CLOEXEC: workers do not inherit the lock.
//
// flock locks belong to an open file description, so a second Acquire in the
// same process fails as one in another process would.
//
// Thread-safety: Acquire is reentrant; a DataDirLock is used from one thread.
#ifndef POSTERN_CONTROL_DATA_DIR_LOCK_H_
#define POSTERN_CONTROL_DATA_DIR_LOCK_H_

#include <string>

#include "absl/status/statusor.h"

namespace postern::control {

class DataDirLock {
 public:
  static constexpr char kFileName[] = "posternd.pid";

  // Opens (creating it mode 0600) <data_dir>/posternd.pid, locks it and
  // writes the pid. The data dir must exist. Errors:
  //   kFailedPrecondition  held by another: "data dir DIR is in use by
  //                        posternd pid PID (lock on FILE)"
  //   others               the file cannot be opened, locked or written
  static absl::StatusOr<DataDirLock> Acquire(const std::string& data_dir);

  DataDirLock(DataDirLock&& other) noexcept;
  DataDirLock& operator=(DataDirLock&& other) noexcept;
  DataDirLock(const DataDirLock&) = delete;
  DataDirLock& operator=(const DataDirLock&) = delete;
  // Releases the lock (closes the descriptor); the file stays.
  ~DataDirLock();

  const std::string& path() const { return path_; }
  int fd() const { return fd_; }

 private:
  DataDirLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}

  std::string path_;
  int fd_ = -1;
};

}  // namespace postern::control

#endif  // POSTERN_CONTROL_DATA_DIR_LOCK_H_
