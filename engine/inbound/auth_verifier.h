// AuthVerifier: checks AUTH credentials for one worker off its event loop.
// An argon2id verification takes tens of milliseconds (see user_db.h); done on
// the loop it would stall every other connection of the shard. The loop hands
// credentials to Submit(); one background thread runs UserDb::Verify and posts
// a result per token back.
//
// Completion path (as in queue/spool_writer.h): results are appended to a
// mutex-protected vector, then 1 is added to an eventfd. The loop watches
// completion_eventfd(), reads the 8-byte counter, then calls
// TakeCompletions(). Reading before taking means a result posted in between
// re-arms the eventfd: at worst one wake-up for nothing, never a lost result.
//
// Overload: at most max_pending submissions wait; beyond that Submit()
// completes at once with kUnavailable (answer 454 4.7.0, temporary), so a
// flood of AUTH attempts from many addresses cannot queue up minutes of
// hashing in front of legitimate users.
//
// Secrets: passwords are wiped with sodium_memzero as soon as they have been
// checked, or refused. Results carry no credentials.
//
// Threading and lifetime: the owner (the worker's loop thread) calls every
// method. SetUserDb() may replace the users (config reload) at any time;
// checks already running finish with the database they started with.
// Stop() (or the destructor) finishes the check in progress, completes every
// other pending token with kUnavailable without checking it, and joins the
// thread; afterwards Submit() completes at once with kUnavailable. Every
// submitted token gets exactly one completion.
#ifndef POSTERN_ENGINE_INBOUND_AUTH_VERIFIER_H_
#define POSTERN_ENGINE_INBOUND_AUTH_VERIFIER_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/inbound/user_db.h"

namespace postern::engine {

struct AuthResult {
  enum class Verdict {
    kOk,           // the user exists and the password matches
    kBad,          // unknown user or wrong password (indistinguishable)
    kUnavailable,  // not checked: overloaded or stopping (a temporary failure)
  };
  uint64_t token = 0;  // as given to Submit()
  Verdict verdict = Verdict::kBad;
  std::vector<std::string> domains;  // the user's domains, when kOk
  absl::Duration latency;            // Submit() to result, monotonic clock
};

struct AuthVerifierOptions {
  size_t max_pending = 64;  // ~4 s of work at 70 ms per check
};

class AuthVerifier {
 public:
  // Starts the thread. `db` may be null: every check then fails (kBad), as
  // with an empty users file. Aborts the process if no eventfd can be made
  // (out of descriptors at start-up: the worker cannot run anyway).
  explicit AuthVerifier(std::shared_ptr<const UserDb> db, AuthVerifierOptions options = {});
  ~AuthVerifier();  // Stop()
  AuthVerifier(const AuthVerifier&) = delete;
  AuthVerifier& operator=(const AuthVerifier&) = delete;

  // Queues a check; never waits for one. `token` is the caller's handle.
  void Submit(uint64_t token, std::string username, std::string password)
      ABSL_LOCKS_EXCLUDED(mu_, done_mu_);

  // Replaces the users for checks that start from now on.
  void SetUserDb(std::shared_ptr<const UserDb> db) ABSL_LOCKS_EXCLUDED(mu_);

  // Nonblocking eventfd, readable when results are waiting. Owned by the
  // verifier; valid until it is destroyed.
  int completion_eventfd() const { return event_fd_; }

  // Every result posted so far, in completion order.
  std::vector<AuthResult> TakeCompletions() ABSL_LOCKS_EXCLUDED(done_mu_);

  // See the header comment. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_, done_mu_);

 private:
  struct Pending {
    uint64_t token;
    std::string username;
    std::string password;
    std::chrono::steady_clock::time_point submitted;
  };

  void Run() ABSL_LOCKS_EXCLUDED(mu_, done_mu_);
  void Post(AuthResult result) ABSL_LOCKS_EXCLUDED(done_mu_);
  static void Wipe(Pending* pending);

  const AuthVerifierOptions options_;
  int event_fd_ = -1;

  absl::Mutex mu_;  // the inbox
  std::deque<Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const UserDb> db_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  absl::Mutex done_mu_;  // the outbox
  std::vector<AuthResult> done_ ABSL_GUARDED_BY(done_mu_);

  std::thread thread_;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_INBOUND_AUTH_VERIFIER_H_
