// Crash consistency: a child process commits transactions in a loop and is
// killed with SIGKILL at a random moment, several times over the same
// directory. After each kill the store must open with its revision counter
// agreeing with the keys, the log and the audit trail, and every revision
// the child had acknowledged must be there.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "control/policy_store/embedded_policy_store.h"
#include "control/policy_store/policy_store.h"
#include "control/policy_store/test_support.h"
#include "gtest/gtest.h"

namespace postern::control {
namespace {

using ::postern::control::testing::FreshDir;
using ::postern::control::testing::WatchRecorder;

constexpr char kChild[] = "control/policy_store/crash_child";

// Reads from `fd` into `buffer` until `deadline`; false at end of file.
bool ReadUntil(int fd, absl::Time deadline, std::string* buffer) {
  for (;;) {
    const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (ms <= 0) return true;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(ms)) <= 0) continue;
    char chunk[4096];
    const ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n <= 0) return false;
    buffer->append(chunk, static_cast<size_t>(n));
  }
}

std::vector<int64_t> ParseAcks(const std::string& buffer) {
  std::vector<int64_t> acks;
  for (absl::string_view line : absl::StrSplit(buffer, '\n', absl::SkipEmpty())) {
    int64_t n = 0;
    // A line cut by the kill is not a complete acknowledgement.
    if (absl::SimpleAtoi(line, &n) && buffer.find(absl::StrCat(line, "\n")) != std::string::npos) {
      acks.push_back(n);
    }
  }
  return acks;
}

// Opens the store as the next start of posternd would, and checks it.
void Verify(const std::string& dir, const std::vector<int64_t>& acks) {
  EmbeddedPolicyStoreOptions options;
  options.lease_check_interval = absl::ZeroDuration();
  auto opened = EmbeddedPolicyStore::Open(dir, options);  // checks counter vs log and audit
  ASSERT_TRUE(opened.ok()) << opened.status();
  EmbeddedPolicyStore& store = **opened;
  auto info = store.Info();
  ASSERT_TRUE(info.ok());
  const int64_t revision = info->revision;
  ASSERT_FALSE(acks.empty());
  EXPECT_GE(revision, acks.back()) << "an acknowledged revision was lost";
  EXPECT_LE(revision, acks.back() + 1) << "the child commits one revision at a time";

  auto counter = store.Get("counter");
  ASSERT_TRUE(counter.ok()) << counter.status();
  EXPECT_EQ(counter->value(), absl::StrCat(revision));
  EXPECT_EQ(counter->mod_revision(), revision);
  EXPECT_EQ(counter->version(), revision);

  auto audit = store.Audit(0, 0);
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->size(), static_cast<size_t>(revision));  // one record per revision, no gap
  for (size_t i = 0; i < audit->size(); ++i) {
    const v1::AuditRecord& record = (*audit)[i];
    ASSERT_EQ(record.revision(), revision - static_cast<int64_t>(i));
    EXPECT_EQ(record.summary(), absl::StrCat("revision ", record.revision()));
  }
  for (int64_t ack : acks) {
    if (ack < info->compact_revision) continue;
    auto old = store.Range({KeySelector::Key("counter"), ack, 0});
    ASSERT_TRUE(old.ok()) << old.status();
    ASSERT_EQ(old->kvs.size(), 1u);
    EXPECT_EQ(old->kvs[0].value(), absl::StrCat(ack));
  }
  // The log holds every revision after the compact revision, once, in order.
  WatchRecorder recorder;
  ASSERT_TRUE(
      store.Watch(KeySelector::Prefix(""), info->compact_revision, recorder.Callback()).ok());
  const size_t want = static_cast<size_t>(revision - info->compact_revision);
  ASSERT_TRUE(recorder.WaitFor(want));
  auto revisions = recorder.revisions();
  ASSERT_EQ(revisions.size(), want);
  for (size_t i = 0; i < want; ++i) {
    EXPECT_EQ(revisions[i], info->compact_revision + 1 + static_cast<int64_t>(i));
  }
}

TEST(CrashTest, AcknowledgedRevisionsSurviveKill9) {
  const std::string dir = FreshDir();
  const uint32_t seed = std::random_device()();
  std::mt19937 rng(seed);
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  int64_t last_ack = 0;
  for (int round = 0; round < 5; ++round) {
    SCOPED_TRACE(::testing::Message() << "round " << round);
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    ASSERT_EQ(fcntl(fds[0], F_SETFD, FD_CLOEXEC), 0);
    const std::string fd_arg = std::to_string(fds[1]);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      execl(kChild, kChild, dir.c_str(), fd_arg.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(fds[1]);
    // Wait for the first acknowledgement, then kill at a random moment.
    std::string buffer;
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    while (buffer.find('\n') == std::string::npos && absl::Now() < give_up) {
      if (!ReadUntil(fds[0], absl::Now() + absl::Milliseconds(20), &buffer)) break;
    }
    ASSERT_NE(buffer.find('\n'), std::string::npos) << "the child acknowledged nothing";
    const absl::Duration delay =
        absl::Milliseconds(std::uniform_int_distribution<int>(0, 200)(rng));
    ReadUntil(fds[0], absl::Now() + delay, &buffer);
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFSIGNALED(status)) << "the child exited early with " << WEXITSTATUS(status);
    while (ReadUntil(fds[0], absl::Now() + absl::Seconds(1), &buffer)) {
    }
    close(fds[0]);

    const std::vector<int64_t> acks = ParseAcks(buffer);
    ASSERT_FALSE(acks.empty());
    EXPECT_GE(acks.front(), last_ack + 1);  // nothing acknowledged was lost before this round
    for (size_t i = 1; i < acks.size(); ++i) ASSERT_EQ(acks[i], acks[i - 1] + 1);
    Verify(dir, acks);
    if (::testing::Test::HasFatalFailure()) return;
    last_ack = acks.back();
    std::printf("round %d: %zu revisions acknowledged, up to %lld\n", round, acks.size(),
                static_cast<long long>(last_ack));
  }
}

}  // namespace
}  // namespace postern::control
