#include "engine/inbound/auth_verifier.h"

#include <sodium.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace postern::engine {

AuthVerifier::AuthVerifier(std::shared_ptr<const UserDb> db, AuthVerifierOptions options)
    : options_(options), db_(std::move(db)) {
  event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (event_fd_ < 0) {
    std::fprintf(stderr, "AuthVerifier: eventfd: %s\n", std::strerror(errno));
    std::abort();
  }
  thread_ = std::thread([this] { Run(); });
}

AuthVerifier::~AuthVerifier() {
  Stop();
  close(event_fd_);
}

namespace {

// Zeroes every byte the string owns, including what a move or a shorter
// assignment left past size() (a short password lives inside the object).
// resize() to capacity() makes those bytes part of the string first.
void WipeString(std::string* s) {
  s->resize(s->capacity());
  sodium_memzero(s->data(), s->size());
  s->clear();
}

}  // namespace

void AuthVerifier::Wipe(Pending* pending) { WipeString(&pending->password); }

void AuthVerifier::Submit(uint64_t token, std::string username, std::string password) {
  Pending p{token, std::move(username), std::move(password), std::chrono::steady_clock::now()};
  WipeString(&password);  // what the move left behind
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_ && pending_.size() < options_.max_pending) {
      pending_.push_back(std::move(p));
      return;
    }
  }
  Wipe(&p);
  Post(AuthResult{token, AuthResult::Verdict::kUnavailable, {}, absl::ZeroDuration()});
}

void AuthVerifier::SetUserDb(std::shared_ptr<const UserDb> db) {
  absl::MutexLock lock(&mu_);
  db_ = std::move(db);
}

std::vector<AuthResult> AuthVerifier::TakeCompletions() {
  std::vector<AuthResult> out;
  absl::MutexLock lock(&done_mu_);
  out.swap(done_);
  return out;
}

void AuthVerifier::Stop() {
  std::deque<Pending> abandoned;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    abandoned.swap(pending_);
  }
  if (thread_.joinable()) thread_.join();
  // Draining means closing sessions: no point spending 70 ms each on checks
  // whose answers nobody will wait for.
  for (Pending& p : abandoned) {
    Wipe(&p);
    Post(AuthResult{p.token, AuthResult::Verdict::kUnavailable, {}, absl::ZeroDuration()});
  }
}

void AuthVerifier::Post(AuthResult result) {
  {
    absl::MutexLock lock(&done_mu_);
    done_.push_back(std::move(result));
  }
  const uint64_t one = 1;
  // Cannot fail short of a bug: the counter would need 2^64-2 unread posts.
  // EAGAIN (counter full) still leaves the fd readable, so nothing is lost.
  ssize_t n;
  do {
    n = write(event_fd_, &one, sizeof(one));
  } while (n < 0 && errno == EINTR);
}

void AuthVerifier::Run() {
  for (;;) {
    Pending p;
    std::shared_ptr<const UserDb> db;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !pending_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;  // Stop() completes what is left
      p = std::move(pending_.front());
      Wipe(&pending_.front());  // what the move left behind
      pending_.pop_front();
      db = db_;
    }
    AuthResult result;
    result.token = p.token;
    result.verdict = db != nullptr && db->Verify(p.username, p.password, &result.domains)
                         ? AuthResult::Verdict::kOk
                         : AuthResult::Verdict::kBad;
    Wipe(&p);
    result.latency = absl::FromChrono(std::chrono::steady_clock::now() - p.submitted);
    Post(std::move(result));
  }
}

}  // namespace postern::engine
