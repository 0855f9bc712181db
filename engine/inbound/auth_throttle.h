// AuthThrottle: limits password guessing per client address. After
// max_failures failed AUTH attempts within `window`, further AUTH from that
// address is refused (454 4.7.0) until the oldest of those failures is older
// than the window; so no address gets more than max_failures guesses in any
// window. A success clears the address's record.
//
// Addresses: IPv4 (and IPv4-mapped IPv6) count per address; other IPv6
// addresses per /64, the block one host usually controls entirely. Text that
// does not parse counts as itself.
//
// Memory is bounded: at most max_addresses are tracked. When full, expired
// records are dropped first, then the one whose last failure is oldest.
//
// Limits of the scheme (documented, not solved here): a botnet spreads its
// guesses over many addresses; an attacker holding one valid account can
// clear its address's record by logging in between guesses. Use long
// passwords; the throttle only makes online guessing slow.
//
// Pure: the caller passes the time (milliseconds, any monotonic origin). Not
// thread-safe: one per worker, used from its loop thread.
#ifndef POSTERN_ENGINE_INBOUND_AUTH_THROTTLE_H_
#define POSTERN_ENGINE_INBOUND_AUTH_THROTTLE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>

namespace postern::engine {

struct AuthThrottleOptions {
  size_t max_failures = 5;
  int64_t window_ms = 10 * 60 * 1000;
  size_t max_addresses = 10000;
};

class AuthThrottle {
 public:
  explicit AuthThrottle(AuthThrottleOptions options = {});

  // False if the address has max_failures failures within the window.
  bool Allowed(std::string_view client_ip, int64_t now_ms);
  // Records a failed attempt.
  void Failed(std::string_view client_ip, int64_t now_ms);
  // Forgets the address's failures.
  void Succeeded(std::string_view client_ip);

  // Addresses tracked now (for metrics and tests).
  size_t size() const { return entries_.size(); }

 private:
  // Failure times, oldest first, at most max_failures of them.
  using Failures = std::deque<int64_t>;

  static std::string Key(std::string_view client_ip);
  void Expire(Failures* failures, int64_t now_ms) const;
  void MakeRoom(int64_t now_ms);

  const AuthThrottleOptions options_;
  std::map<std::string, Failures, std::less<>> entries_;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_INBOUND_AUTH_THROTTLE_H_
