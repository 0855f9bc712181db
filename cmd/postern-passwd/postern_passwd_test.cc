#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/inbound/user_db.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

extern char** environ;

namespace postern {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

struct Result {
  int exit_code = -1;
  std::string err;
};

// Runs the tool with `args`, `input` on its stdin (a pipe, not a terminal).
Result RunTool(const std::vector<std::string>& args, const std::string& input) {
  const std::string tool =
      std::string(std::getenv("TEST_SRCDIR")) + "/postern/cmd/postern-passwd/postern-passwd";
  std::vector<char*> argv = {const_cast<char*>(tool.c_str())};
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int in_pipe[2], err_pipe[2];
  EXPECT_EQ(pipe2(in_pipe, O_CLOEXEC), 0);
  EXPECT_EQ(pipe2(err_pipe, O_CLOEXEC), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_pipe[0], 0);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  pid_t pid = 0;
  EXPECT_EQ(posix_spawn(&pid, tool.c_str(), &actions, nullptr, argv.data(), environ), 0) << tool;
  posix_spawn_file_actions_destroy(&actions);
  close(in_pipe[0]);
  close(err_pipe[1]);
  // Small inputs fit in the pipe buffer: write all, then close for EOF.
  EXPECT_EQ(write(in_pipe[1], input.data(), input.size()), static_cast<ssize_t>(input.size()));
  close(in_pipe[1]);
  Result result;
  char buf[4096];
  ssize_t n;
  while ((n = read(err_pipe[0], buf, sizeof(buf))) > 0) result.err.append(buf, n);
  close(err_pipe[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class PosternPasswdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::string(::testing::TempDir()) + "/passwd_XXXXXX";
    ASSERT_NE(mkdtemp(dir_.data()), nullptr);
    path_ = dir_ + "/users";
  }
  void TearDown() override {
    std::remove(path_.c_str());
    rmdir(dir_.c_str());
  }

  std::unique_ptr<engine::UserDb> Load() {
    absl::StatusOr<std::unique_ptr<engine::UserDb>> db = engine::UserDb::Load(path_);
    EXPECT_TRUE(db.ok()) << db.status();
    return db.ok() ? std::move(*db) : nullptr;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(PosternPasswdTest, AddReplaceDelete) {
  Result r = RunTool({path_, "alice", "--domains", "Example.com,.corp.example"}, "s3cret\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("added user \"alice\""));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr("s3cret")));
  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_THAT(ReadAll(path_), StartsWith("alice:$argon2id$"));
  EXPECT_EQ(ReadAll(path_).find("s3cret"), std::string::npos);

  ASSERT_EQ(RunTool({path_, "bob"}, "pw with spaces\r\n").exit_code, 0);
  std::vector<std::string> domains;
  std::unique_ptr<engine::UserDb> db = Load();
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(db->size(), 2u);
  EXPECT_TRUE(db->Verify("alice", "s3cret", &domains));
  EXPECT_THAT(domains, ElementsAre("example.com", ".corp.example"));
  EXPECT_TRUE(db->Verify("bob", "pw with spaces", &domains));
  EXPECT_THAT(domains, IsEmpty());

  // Replace alice's password; the file keeps its mode and bob.
  r = RunTool({path_, "alice"}, "n3w");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("updated user \"alice\""));
  db = Load();
  EXPECT_FALSE(db->Verify("alice", "s3cret", nullptr));
  EXPECT_TRUE(db->Verify("alice", "n3w", nullptr));
  EXPECT_TRUE(db->Verify("bob", "pw with spaces", nullptr));
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  r = RunTool({"--delete", path_, "alice"}, "");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  db = Load();
  EXPECT_EQ(db->size(), 1u);
  EXPECT_FALSE(db->Verify("alice", "n3w", nullptr));
  r = RunTool({"--delete", path_, "alice"}, "");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("no user \"alice\""));
}

TEST_F(PosternPasswdTest, KeepsCommentsAndAnExistingMode) {
  {
    std::ofstream out(path_);
    out << "# managed by hand\n\n";
  }
  ASSERT_EQ(chmod(path_.c_str(), 0640), 0);
  ASSERT_EQ(RunTool({path_, "carol"}, "pw\n").exit_code, 0);
  EXPECT_THAT(ReadAll(path_), StartsWith("# managed by hand\n\ncarol:$argon2id$"));
  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  // No temporary file is left behind.
  std::remove(path_.c_str());
  EXPECT_EQ(rmdir(dir_.c_str()), 0) << "directory not empty";
  ASSERT_EQ(mkdir(dir_.c_str(), 0700), 0);
}

TEST_F(PosternPasswdTest, RefusesBadInput) {
  EXPECT_EQ(RunTool({path_, "alice"}, "").exit_code, 1);    // no password
  EXPECT_EQ(RunTool({path_, "alice"}, "\n").exit_code, 1);  // empty password
  EXPECT_EQ(RunTool({path_, "al:ice"}, "pw\n").exit_code, 1);
  EXPECT_EQ(RunTool({path_, "alice", "--domains", "a..b"}, "pw\n").exit_code, 1);
  EXPECT_EQ(RunTool({path_}, "pw\n").exit_code, 1);
  EXPECT_EQ(RunTool({"--delete", path_, "alice", "--domains", "a.b"}, "").exit_code, 1);
  EXPECT_EQ(RunTool({path_, "alice", "--bogus"}, "pw\n").exit_code, 1);
  struct stat st;
  EXPECT_NE(stat(path_.c_str(), &st), 0) << "nothing was written";
  // A file the node could not load is not made worse.
  {
    std::ofstream out(path_);
    out << "broken line\n";
  }
  Result r = RunTool({path_, "alice"}, "pw\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("line 1"));
  EXPECT_EQ(ReadAll(path_), "broken line\n");
}

}  // namespace
}  // namespace postern
