// End-to-end test of the postern-spool binary: write a spool with
// SpoolStore, keep it open as a worker would, run the tool, check its output.
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "queue/spool_store.h"

extern char** environ;

namespace postern {
namespace {

struct Result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs the tool with `args`, collecting stdout and stderr.
Result RunTool(const std::vector<std::string>& args) {
  const std::string tool =
      std::string(std::getenv("TEST_SRCDIR")) + "/postern/cmd/postern-spool/postern-spool";
  std::vector<char*> argv = {const_cast<char*>(tool.c_str())};
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  int out_pipe[2], err_pipe[2];
  EXPECT_EQ(pipe2(out_pipe, O_CLOEXEC), 0);
  EXPECT_EQ(pipe2(err_pipe, O_CLOEXEC), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  pid_t pid = 0;
  Result result;
  EXPECT_EQ(posix_spawn(&pid, tool.c_str(), &actions, nullptr, argv.data(), environ), 0) << tool;
  posix_spawn_file_actions_destroy(&actions);
  close(out_pipe[1]);
  close(err_pipe[1]);
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  while (open_fds > 0) {
    if (poll(fds, 2, 30000) <= 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[65536];
      ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, n);
      } else {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string Id(int n) { return absl::StrFormat("%014X%02X", 0x0005F3A1B2C3D4 + n, 2); }

queue::SpoolRecord MakeRecord(int n, std::string sender, std::vector<std::string> rcpts,
                              std::string body) {
  queue::SpoolRecord r;
  r.envelope.set_queue_id(Id(n));
  r.envelope.set_sender(std::move(sender));
  for (auto& a : rcpts) r.envelope.add_recipients()->set_address(a);
  r.envelope.mutable_arrival_time()->set_seconds(1700000000 + n);
  r.envelope.mutable_arrival_time()->set_nanos(500000000);
  r.envelope.set_body_size(body.size());
  r.body = std::move(body);
  return r;
}

class PosternSpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::string(std::getenv("TEST_TMPDIR")) + "/" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name() + "/spool/2";
    std::filesystem::remove_all(dir_);
    auto store = queue::SpoolStore::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);  // stays open: the tool runs beside a "worker"
    body_.assign(300000, '\0');
    for (size_t i = 0; i < body_.size(); ++i) body_[i] = static_cast<char>(i * 7 + (i >> 9));
    ASSERT_TRUE(
        store_
            ->WriteBatch({MakeRecord(1, "alice@example.org",
                                     {"bob@example.net", "carol@example.net"}, body_),
                          MakeRecord(2, "", {"postmaster@example.org"}, "bounce\r\n"),
                          MakeRecord(3, "q\"uote\\@example.org", {"j\xc3\xb6rg@x.de"}, "x")})
            .ok());
  }

  std::string dir_;
  std::string body_;
  std::unique_ptr<queue::SpoolStore> store_;
};

TEST_F(PosternSpoolTest, ListsOneLinePerMessage) {
  Result r = RunTool({"--dir", dir_, "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, Id(1) + "\talice@example.org\tbob@example.net,carol@example.net\t300000\n" +
                       Id(2) + "\t<>\tpostmaster@example.org\t8\n" + Id(3) +
                       "\tq\"uote\\@example.org\tj\xc3\xb6rg@x.de\t1\n");
}

TEST_F(PosternSpoolTest, ListsJsonLines) {
  Result r = RunTool({"--json", "--dir=" + dir_, "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "{\"queue_id\":\"" + Id(1) +
                "\",\"sender\":\"alice@example.org\",\"recipients\":[\"bob@example.net\","
                "\"carol@example.net\"],\"body_size\":300000,\"arrival_time\":"
                "\"2023-11-14T22:13:21.5Z\"}\n"
                "{\"queue_id\":\"" +
                Id(2) +
                "\",\"sender\":\"\",\"recipients\":[\"postmaster@example.org\"],\"body_size\":8,"
                "\"arrival_time\":\"2023-11-14T22:13:22.5Z\"}\n"
                "{\"queue_id\":\"" +
                Id(3) +
                "\",\"sender\":\"q\\\"uote\\\\@example.org\",\"recipients\":[\"j\xc3\xb6rg@x.de\"],"
                "\"body_size\":1,\"arrival_time\":\"2023-11-14T22:13:23.5Z\"}\n");
}

TEST_F(PosternSpoolTest, BodyIsWrittenExactly) {
  Result r = RunTool({"--dir", dir_, "body", Id(1)});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(r.out.size(), body_.size());
  EXPECT_TRUE(r.out == body_);
  r = RunTool({"--dir", dir_, "body", Id(2)});
  EXPECT_EQ(r.out, "bounce\r\n");
}

TEST_F(PosternSpoolTest, Counts) {
  Result r = RunTool({"--dir", dir_, "count"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "3\n");
  ASSERT_TRUE(store_->Remove(Id(2)).ok());
  r = RunTool({"--dir", dir_, "count"});
  EXPECT_EQ(r.out, "2\n");
}

TEST_F(PosternSpoolTest, ErrorsExitOneWithAMessage) {
  Result r = RunTool({"--dir", dir_, "body", Id(9)});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.out.empty());
  EXPECT_NE(r.err.find("NOT_FOUND"), std::string::npos) << r.err;

  r = RunTool({"--dir", dir_ + "/nope", "list"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no spool database"), std::string::npos) << r.err;

  r = RunTool({"list"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--dir is required"), std::string::npos) << r.err;

  r = RunTool({"--dir", dir_, "frobnicate"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("unknown command"), std::string::npos) << r.err;

  r = RunTool({"--dir", dir_, "body"});
  EXPECT_EQ(r.exit_code, 1);
  r = RunTool({"--dir", dir_, "body", "not-an-id"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("malformed queue id"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace postern
