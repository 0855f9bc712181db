#include "control/data_dir_lock.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"

namespace postern::control {
namespace {

std::filesystem::path FreshDir(const std::string& name) {
  auto dir = std::filesystem::path(testing::TempDir()) / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::string Contents(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(DataDirLock, HolderWritesItsPid) {
  auto dir = FreshDir("lock_pid");
  absl::StatusOr<DataDirLock> lock = DataDirLock::Acquire(dir.string());
  ASSERT_TRUE(lock.ok()) << lock.status();
  EXPECT_EQ(lock->path(), (dir / "posternd.pid").string());
  EXPECT_EQ(Contents(dir / "posternd.pid"), absl::StrCat(getpid(), "\n"));
}

TEST(DataDirLock, SecondAcquireFailsAndNamesDirAndHolder) {
  auto dir = FreshDir("lock_twice");
  absl::StatusOr<DataDirLock> first = DataDirLock::Acquire(dir.string());
  ASSERT_TRUE(first.ok()) << first.status();
  // flock belongs to the open file description: a second open in this
  // process conflicts as another process would.
  absl::StatusOr<DataDirLock> second = DataDirLock::Acquire(dir.string());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(second.status().message(),
            absl::StrCat("data dir ", dir.string(), " is in use by posternd pid ", getpid(),
                         " (lock on ", (dir / "posternd.pid").string(), ")"));
  // The loser did not overwrite the holder's pid.
  EXPECT_EQ(Contents(dir / "posternd.pid"), absl::StrCat(getpid(), "\n"));
}

TEST(DataDirLock, ReleasedWhenDestroyed) {
  auto dir = FreshDir("lock_release");
  {
    absl::StatusOr<DataDirLock> first = DataDirLock::Acquire(dir.string());
    ASSERT_TRUE(first.ok()) << first.status();
    DataDirLock moved = std::move(*first);  // the moved-from one releases nothing
    EXPECT_FALSE(DataDirLock::Acquire(dir.string()).ok());
  }
  absl::StatusOr<DataDirLock> again = DataDirLock::Acquire(dir.string());
  EXPECT_TRUE(again.ok()) << again.status();
}

TEST(DataDirLock, StaleFileFromACrashIsTakenOver) {
  auto dir = FreshDir("lock_stale");
  std::ofstream(dir / "posternd.pid") << "999999\n";
  absl::StatusOr<DataDirLock> lock = DataDirLock::Acquire(dir.string());
  ASSERT_TRUE(lock.ok()) << lock.status();
  EXPECT_EQ(Contents(dir / "posternd.pid"), absl::StrCat(getpid(), "\n"));
}

TEST(DataDirLock, NotInheritedAcrossExec) {
  auto dir = FreshDir("lock_cloexec");
  absl::StatusOr<DataDirLock> lock = DataDirLock::Acquire(dir.string());
  ASSERT_TRUE(lock.ok()) << lock.status();
  EXPECT_NE(fcntl(lock->fd(), F_GETFD) & FD_CLOEXEC, 0);
}

TEST(DataDirLock, HeldAgainstAnotherProcess) {
  auto dir = FreshDir("lock_child");
  absl::StatusOr<DataDirLock> lock = DataDirLock::Acquire(dir.string());
  ASSERT_TRUE(lock.ok()) << lock.status();
  const pid_t parent = getpid();
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The child shares the parent's description; a fresh one must fail and
    // name the parent.
    absl::StatusOr<DataDirLock> mine = DataDirLock::Acquire(dir.string());
    bool ok = !mine.ok() &&
              std::string(mine.status().message()).find(absl::StrCat("pid ", parent, " ")) !=
                  std::string::npos;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(DataDirLock, MissingDirIsAnError) {
  auto dir = FreshDir("lock_missing") / "nope";
  absl::StatusOr<DataDirLock> lock = DataDirLock::Acquire(dir.string());
  ASSERT_FALSE(lock.ok());
  EXPECT_NE(lock.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(lock.status().message()).find("posternd.pid"), std::string::npos);
}

}  // namespace
}  // namespace postern::control
