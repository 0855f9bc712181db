// ConnectionLimiter: admission control for new SMTP connections on one worker
// (answered with "421 4.7.0 Too many connections" by the caller). Pure: the
// time is passed in, nothing is read from the system.
//
// Threading: owned by one worker and used only from its event loop thread;
// not thread-safe. Limits are therefore per worker, not per node: SO_REUSEPORT
// spreads one client's connections over all N workers by their 4-tuple hash,
// so node-wide a client can hold up to N x max_per_ip connections (and open
// N x max_rate_per_ip per minute). Configure per-worker values with that in
// mind; sharing counters across workers would put a lock or a message on the
// accept path, which the shard-per-core design avoids.
//
// What counts as one client ("address key"):
//  - IPv4: the address (a.b.c.d/32). IPv4-mapped IPv6 (::ffff:a.b.c.d) is the
//    same key as a.b.c.d.
//  - IPv6: the /64 prefix. A single host routinely gets a whole /64 and can
//    pick a fresh address per connection, so counting /128s would make every
//    per-address limit meaningless for IPv6. The cost: hosts behind one /64
//    share a budget.
//  - Anything that is not an IP address text is its own key (never expected:
//    callers pass the peer address or the PROXY header's source).
//
// Limits (a value <= 0 turns that limit off):
//  - max_total: concurrent connections on this worker. Checked first.
//  - max_per_ip: concurrent connections per address key.
//  - max_rate_per_ip: new connections per minute per address key, as a token
//    bucket holding up to max_rate_per_ip tokens (the burst) that refills
//    continuously at max_rate_per_ip per 60 s. Only admitted connections take
//    a token; a refused attempt costs nothing, so a client that backs off
//    recovers at the refill rate.
//
// Memory: one entry per address key that has open connections or a
// partly-drained token bucket. An entry with no connections whose bucket has
// refilled holds no information and is dropped: at once on Release when the
// rate limit is off, otherwise by Sweep(now_ms), which the owner should call
// periodically (every few seconds is plenty; cost is linear in the number of
// idle entries). The idle entries are also capped: at most
// max_tracked_addresses are kept, and one more forgets the longest-idle one
// (and with it that key's rate history). Entries with open connections are
// never forgotten, so the table holds at most max_tracked_addresses + (keys
// with open connections) entries, the latter at most max_total when that is
// set. An entry costs under 200 bytes: about 3 MiB per worker at the default
// cap. max_tracked_addresses = 0 keeps rate history only while connected.
//
// The table is hashed with a per-instance seed, so a client choosing many
// /64s cannot precompute colliding keys to slow every lookup down.
//
// The cap means a client with more than max_tracked_addresses distinct keys
// (many IPv4 addresses or /64s) can evade the rate limit; max_total still
// holds. Forgetting rather than refusing is deliberate: refusing new keys
// once the table is full would let such a client lock everyone else out.
#ifndef POSTERN_ENGINE_NET_CONNECTION_LIMITER_H_
#define POSTERN_ENGINE_NET_CONNECTION_LIMITER_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

namespace postern::engine {

struct ConnectionLimits {
  int max_per_ip = 0;       // concurrent connections per address key
  int max_rate_per_ip = 0;  // new connections per minute per address key
  int max_total = 0;        // concurrent connections on this worker
  // Idle entries kept for their rate history (see "Memory" above).
  size_t max_tracked_addresses = 16384;
};

class ConnectionLimiter {
 public:
  enum class Admission {
    kOk,             // admitted: call Release(ip) exactly once when it closes
    kTooManyFromIp,  // max_per_ip reached for this address key
    kRateExceeded,   // max_rate_per_ip reached for this address key
    kTooManyTotal,   // max_total reached on this worker
  };

  explicit ConnectionLimiter(ConnectionLimits limits);
  ConnectionLimiter(const ConnectionLimiter&) = delete;
  ConnectionLimiter& operator=(const ConnectionLimiter&) = delete;

  // Decides on a new connection from `ip` (textual address) at `now_ms` (any
  // monotonic milliseconds; a clock that steps back counts as no time
  // passing). Only kOk counts a connection (and takes a token).
  Admission Admit(std::string_view ip, int64_t now_ms);

  // A connection admitted for `ip` closed. A Release without a matching
  // Admit is a caller bug: it changes nothing and is counted in
  // unmatched_releases() so the owner can export it.
  void Release(std::string_view ip);

  // Drops idle entries whose token bucket has refilled by `now_ms`.
  void Sweep(int64_t now_ms);

  // New limits for new admissions (a config reload). Open connections stay
  // counted; buckets keep their tokens, clamped to the new burst.
  void SetLimits(ConnectionLimits limits);

  int total() const { return total_; }
  // Open connections for the address key of `ip`.
  int connections(std::string_view ip) const;
  size_t tracked_addresses() const { return entries_.size(); }
  int64_t unmatched_releases() const { return unmatched_releases_; }

 private:
  // IPv4 as ::ffff:a.b.c.d, IPv6 with the low 64 bits cleared; `text` only
  // for input that is not an address.
  struct Key {
    std::array<uint8_t, 16> bytes{};
    std::string text;
    bool operator==(const Key& other) const = default;
  };
  struct KeyHash {
    uint64_t seed = 0;
    size_t operator()(const Key& key) const;
  };
  struct Entry {
    int connections = 0;
    // Token bucket in units of 1/60000 token per rate unit: a connection
    // costs 60000 and each millisecond adds max_rate_per_ip, so the
    // arithmetic is exact integers. Full is max_rate_per_ip * 60000.
    int64_t credit = 0;
    int64_t updated_ms = 0;         // when `credit` was last brought up to date
    std::list<Key>::iterator idle;  // position in idle_ when connections == 0
  };
  using Map = std::unordered_map<Key, Entry, KeyHash>;

  static Key MakeKey(std::string_view ip);
  bool RateLimited() const { return limits_.max_rate_per_ip > 0; }
  int64_t FullCredit() const;
  void Refill(Entry& entry, int64_t now_ms) const;
  // An entry whose connections dropped to zero: forget it or queue it idle.
  void BecomeIdle(Map::iterator it);
  void Forget(Map::iterator it);

  ConnectionLimits limits_;
  Map entries_;
  // Keys of entries without connections, longest idle first.
  std::list<Key> idle_;
  int total_ = 0;
  // The latest time seen by Admit or Sweep: Release has no clock of its own.
  int64_t latest_now_ms_ = std::numeric_limits<int64_t>::min();
  int64_t unmatched_releases_ = 0;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_NET_CONNECTION_LIMITER_H_
