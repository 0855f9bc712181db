// The child of crash_test: opens the policy store in argv[1] and commits
// transactions in a loop until it is killed, writing each revision to file
// descriptor argv[2] ("N\n") only after Txn() returned it, i.e. once it is
// acknowledged. Every revision N puts "counter" = N, so the parent can check
// that the counter, the keys, the log and the audit trail agree.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "control/policy_store/embedded_policy_store.h"
#include "control/policy_store/policy_store.h"

namespace postern::control {
namespace {

int Run(const std::string& dir, int ack_fd) {
  EmbeddedPolicyStoreOptions options;
  options.lease_check_interval = absl::ZeroDuration();
  auto store = EmbeddedPolicyStore::Open(dir, options);
  if (!store.ok()) {
    std::fprintf(stderr, "crash_child: %s\n", std::string(store.status().message()).c_str());
    return 2;
  }
  int64_t revision = (*store)->Info()->revision;
  const absl::Time give_up = absl::Now() + absl::Seconds(60);  // if nobody kills us
  while (absl::Now() < give_up) {
    const int64_t next = revision + 1;
    TxnRequest request;
    request.compares = {Compare::StoreRevisionIs(revision)};
    request.ops = {
        TxnOp::Put("counter", absl::StrCat(next)),
        TxnOp::Put(absl::StrCat("k/", next % 7), absl::StrCat(std::string(next % 300, 'x'), next))};
    if (next % 5 == 0) {
      request.ops.push_back(TxnOp::DeletePrefix(absl::StrCat("k/", (next + 3) % 7)));
    }
    request.audit = {"crash-child", absl::StrCat("pid ", getpid()),
                     absl::StrCat("revision ", next)};
    auto result = (*store)->Txn(request);
    if (!result.ok() || !result->succeeded || result->revision != next) {
      std::fprintf(
          stderr, "crash_child: revision %lld: %s\n", static_cast<long long>(next),
          result.ok() ? result->conflict.c_str() : std::string(result.status().message()).c_str());
      return 3;
    }
    revision = next;
    const std::string line = absl::StrCat(next, "\n");
    if (write(ack_fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return 4;
    if (next % 40 == 0) {
      if (absl::Status s = (*store)->Compact(next - 20); !s.ok()) return 5;
    }
  }
  return 0;
}

}  // namespace
}  // namespace postern::control

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: crash_child DIR ACK_FD\n");
    return 2;
  }
  int fd = -1;
  if (!absl::SimpleAtoi(argv[2], &fd) || fd < 0) {
    std::fprintf(stderr, "crash_child: bad descriptor %s\n", argv[2]);
    return 2;
  }
  return postern::control::Run(argv[1], fd);
}
