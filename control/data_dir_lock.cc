#include "control/data_dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace postern::control {
namespace {

// The pid written in the lock file, or 0 if there is none (yet).
long ReadPid(int fd) {
  char buf[32] = {};
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return 0;
  std::string_view text(buf, static_cast<size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  long pid = 0;
  auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), pid);
  if (err != std::errc() || end != text.data() + text.size() || pid <= 0) return 0;
  return pid;
}

}  // namespace

absl::StatusOr<DataDirLock> DataDirLock::Acquire(const std::string& data_dir) {
  std::string path = data_dir;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  if (path != "/") path += '/';
  path += kFileName;
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", path));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    if (e != EWOULDBLOCK) {
      close(fd);
      return absl::ErrnoToStatus(e, absl::StrCat("cannot lock ", path));
    }
    // The holder writes its pid right after it locked: give it a moment.
    long pid = ReadPid(fd);
    for (int i = 0; pid == 0 && i < 20; ++i) {
      absl::SleepFor(absl::Milliseconds(10));
      pid = ReadPid(fd);
    }
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("data dir ", data_dir, " is in use by posternd pid ",
                     pid > 0 ? std::to_string(pid) : "(unknown)", " (lock on ", path, ")"));
  }
  std::string text = absl::StrCat(getpid(), "\n");
  errno = 0;
  if (ftruncate(fd, 0) != 0 ||
      pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    int e = errno != 0 ? errno : EIO;  // a short write sets none
    close(fd);
    return absl::ErrnoToStatus(e, absl::StrCat("cannot write ", path));
  }
  return DataDirLock(std::move(path), fd);
}

DataDirLock::DataDirLock(DataDirLock&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)) {}

DataDirLock& DataDirLock::operator=(DataDirLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

DataDirLock::~DataDirLock() {
  if (fd_ >= 0) close(fd_);
}

}  // namespace postern::control
