#include "engine/inbound/auth_verifier.h"

#include <poll.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/inbound/user_db.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace postern::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using Verdict = AuthResult::Verdict;

std::shared_ptr<const UserDb> TestDb() {
  static const std::string* hash = new std::string(*UserDb::HashPassword("s3cret"));
  absl::StatusOr<std::unique_ptr<UserDb>> db =
      UserDb::Parse("alice:" + *hash + ":client.test\n", "users");
  EXPECT_TRUE(db.ok()) << db.status();
  return std::shared_ptr<const UserDb>(std::move(*db));
}

// Waits on the eventfd the way the worker's loop does, then takes results,
// until `count` results have arrived.
std::map<uint64_t, AuthResult> Collect(AuthVerifier* verifier, size_t count) {
  std::map<uint64_t, AuthResult> results;
  while (results.size() < count) {
    pollfd pfd{verifier->completion_eventfd(), POLLIN, 0};
    const int ready = poll(&pfd, 1, 10000);
    EXPECT_EQ(ready, 1) << "no completion within 10 s";
    if (ready != 1) break;
    uint64_t counter = 0;
    EXPECT_EQ(read(verifier->completion_eventfd(), &counter, sizeof(counter)),
              static_cast<ssize_t>(sizeof(counter)));
    for (AuthResult& r : verifier->TakeCompletions()) {
      EXPECT_TRUE(results.emplace(r.token, std::move(r)).second) << "token completed twice";
    }
  }
  return results;
}

TEST(AuthVerifierTest, ChecksOffTheCallingThread) {
  AuthVerifier verifier(TestDb());
  verifier.Submit(1, "alice", "s3cret");
  verifier.Submit(2, "alice", "wrong");
  verifier.Submit(3, "mallory", "s3cret");
  std::map<uint64_t, AuthResult> results = Collect(&verifier, 3);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[1].verdict, Verdict::kOk);
  EXPECT_THAT(results[1].domains, ElementsAre("client.test"));
  EXPECT_GT(results[1].latency, absl::ZeroDuration());
  EXPECT_EQ(results[2].verdict, Verdict::kBad);
  EXPECT_THAT(results[2].domains, IsEmpty());
  EXPECT_EQ(results[3].verdict, Verdict::kBad);
  EXPECT_THAT(verifier.TakeCompletions(), IsEmpty());
}

TEST(AuthVerifierTest, NoDatabaseRejectsEveryone) {
  AuthVerifier verifier(nullptr);
  verifier.Submit(7, "alice", "s3cret");
  std::map<uint64_t, AuthResult> results = Collect(&verifier, 1);
  EXPECT_EQ(results[7].verdict, Verdict::kBad);
  // A reload brings the users in.
  verifier.SetUserDb(TestDb());
  verifier.Submit(8, "alice", "s3cret");
  results = Collect(&verifier, 1);
  EXPECT_EQ(results[8].verdict, Verdict::kOk);
}

TEST(AuthVerifierTest, OverloadCompletesAtOnceAsUnavailable) {
  AuthVerifier verifier(TestDb(), {.max_pending = 2});
  // Two wait, and the thread may already hold a third, so normally 3 at
  // most are checked. Only a stall of the submitting thread long enough for
  // whole checks (70 ms each) could let more in; the bound allows for that.
  for (uint64_t token = 1; token <= 10; ++token) verifier.Submit(token, "alice", "s3cret");
  std::map<uint64_t, AuthResult> results = Collect(&verifier, 10);
  ASSERT_EQ(results.size(), 10u);
  int checked = 0;
  for (const auto& [token, result] : results) {
    if (result.verdict == Verdict::kOk)
      ++checked;
    else
      EXPECT_EQ(result.verdict, Verdict::kUnavailable) << token;
  }
  EXPECT_GE(checked, 2);
  EXPECT_LE(checked, 6);
}

TEST(AuthVerifierTest, StopCompletesEveryToken) {
  AuthVerifier verifier(TestDb());
  for (uint64_t token = 1; token <= 5; ++token) verifier.Submit(token, "alice", "s3cret");
  verifier.Stop();
  verifier.Stop();  // idempotent
  verifier.Submit(6, "alice", "s3cret");
  std::map<uint64_t, AuthResult> results = Collect(&verifier, 6);
  ASSERT_EQ(results.size(), 6u);
  EXPECT_EQ(results[6].verdict, Verdict::kUnavailable);
  for (const auto& [token, result] : results) {
    EXPECT_NE(result.verdict, Verdict::kBad) << token;  // checked (ok) or abandoned
  }
}

}  // namespace
}  // namespace postern::engine
