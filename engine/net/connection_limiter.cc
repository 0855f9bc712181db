#include "engine/net/connection_limiter.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iterator>
#include <string>
#include <string_view>

namespace postern::engine {
namespace {

// One connection's worth of bucket credit (see Entry::credit).
constexpr int64_t kCost = 60'000;
// A bucket empties at most to zero and refills at max_rate_per_ip per ms, so
// after a minute it is full whatever it held; longer gaps add nothing and
// capping them keeps the arithmetic far from overflow.
constexpr int64_t kFullRefillMs = 60'000;

// splitmix64's finalizer: every input bit affects every output bit.
uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

size_t ConnectionLimiter::KeyHash::operator()(const Key& key) const {
  uint64_t high = 0;
  uint64_t low = 0;
  std::memcpy(&high, key.bytes.data(), 8);
  std::memcpy(&low, key.bytes.data() + 8, 8);
  uint64_t h = Mix(Mix(seed ^ high) ^ low);
  if (!key.text.empty()) h ^= std::hash<std::string>()(key.text);
  return static_cast<size_t>(h);
}

ConnectionLimiter::ConnectionLimiter(ConnectionLimits limits)
    // The object's address differs per process (ASLR) and per instance, and a
    // remote client cannot see it: enough to defeat precomputed collisions
    // without reading a random source.
    : limits_(limits),
      entries_(
          0, KeyHash{Mix(reinterpret_cast<uintptr_t>(this) ^ reinterpret_cast<uintptr_t>(&Mix))}) {}

ConnectionLimiter::Key ConnectionLimiter::MakeKey(std::string_view ip) {
  Key key;
  // Not an address: keyed by its text, with bytes no peer address maps to
  // (ff00::/64 is multicast), so even "" cannot share the key of "::".
  const auto text_key = [&key, ip] {
    key.bytes[0] = 0xff;
    key.text = std::string(ip);
    return key;
  };
  // inet_pton needs a NUL-terminated string; addresses are short.
  char text[INET6_ADDRSTRLEN];
  if (ip.empty() || ip.size() >= sizeof(text)) return text_key();
  std::memcpy(text, ip.data(), ip.size());
  text[ip.size()] = '\0';
  if (inet_pton(AF_INET, text, key.bytes.data() + 12) == 1) {
    key.bytes[10] = key.bytes[11] = 0xff;
    return key;
  }
  if (inet_pton(AF_INET6, text, key.bytes.data()) == 1) {
    static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    // An IPv4-mapped address is an IPv4 host: keep all 32 bits.
    if (std::memcmp(key.bytes.data(), kMappedPrefix, sizeof(kMappedPrefix)) != 0) {
      std::fill(key.bytes.begin() + 8, key.bytes.end(), 0);  // the /64
    }
    return key;
  }
  return text_key();
}

int64_t ConnectionLimiter::FullCredit() const {
  return static_cast<int64_t>(limits_.max_rate_per_ip) * kCost;
}

void ConnectionLimiter::Refill(Entry& entry, int64_t now_ms) const {
  const int64_t elapsed = std::clamp<int64_t>(now_ms - entry.updated_ms, 0, kFullRefillMs);
  // now_ms - updated_ms cannot overflow: both come from the same clock.
  entry.credit = std::min(FullCredit(), entry.credit + elapsed * limits_.max_rate_per_ip);
  entry.updated_ms = std::max(entry.updated_ms, now_ms);
}

ConnectionLimiter::Admission ConnectionLimiter::Admit(std::string_view ip, int64_t now_ms) {
  latest_now_ms_ = std::max(latest_now_ms_, now_ms);
  if (limits_.max_total > 0 && total_ >= limits_.max_total) return Admission::kTooManyTotal;

  Key key = MakeKey(ip);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    Entry entry;
    entry.updated_ms = now_ms;
    // A new key starts with a full bucket, less this connection. max_per_ip
    // and max_rate_per_ip are at least 1 when on, so the first always fits.
    entry.credit = RateLimited() ? FullCredit() - kCost : 0;
    entry.connections = 1;
    entries_.emplace(std::move(key), entry);
    ++total_;
    return Admission::kOk;
  }

  Entry& entry = it->second;
  if (limits_.max_per_ip > 0 && entry.connections >= limits_.max_per_ip) {
    return Admission::kTooManyFromIp;
  }
  if (RateLimited()) {
    Refill(entry, now_ms);
    if (entry.credit < kCost) return Admission::kRateExceeded;
    entry.credit -= kCost;
  }
  if (entry.connections == 0) idle_.erase(entry.idle);
  ++entry.connections;
  ++total_;
  return Admission::kOk;
}

void ConnectionLimiter::Release(std::string_view ip) {
  auto it = entries_.find(MakeKey(ip));
  if (it == entries_.end() || it->second.connections == 0) {
    ++unmatched_releases_;
    return;
  }
  --total_;
  if (--it->second.connections == 0) BecomeIdle(it);
}

void ConnectionLimiter::BecomeIdle(Map::iterator it) {
  Entry& entry = it->second;
  if (RateLimited()) {
    // latest_now_ms_ is no later than the true time, so this never credits
    // tokens that have not been earned.
    Refill(entry, latest_now_ms_);
  }
  // Without a rate limit, or with a full bucket, the entry says nothing.
  if (!RateLimited() || entry.credit >= FullCredit() || limits_.max_tracked_addresses == 0) {
    entries_.erase(it);
    return;
  }
  entry.idle = idle_.insert(idle_.end(), it->first);
  if (idle_.size() > limits_.max_tracked_addresses) Forget(entries_.find(idle_.front()));
}

void ConnectionLimiter::Forget(Map::iterator it) {
  if (it->second.connections == 0) idle_.erase(it->second.idle);
  entries_.erase(it);
}

void ConnectionLimiter::Sweep(int64_t now_ms) {
  latest_now_ms_ = std::max(latest_now_ms_, now_ms);
  for (auto key = idle_.begin(); key != idle_.end();) {
    auto it = entries_.find(*key);
    ++key;  // before Forget erases the list node
    Refill(it->second, now_ms);
    if (it->second.credit >= FullCredit()) Forget(it);
  }
}

void ConnectionLimiter::SetLimits(ConnectionLimits limits) {
  const bool was_rate_limited = RateLimited();
  limits_ = limits;
  if (!RateLimited()) {
    // Idle entries exist only for their rate history.
    while (!idle_.empty()) Forget(entries_.find(idle_.front()));
    return;
  }
  // Credit is counted in connections, not in rate units, so a changed rate
  // needs no conversion: Refill clamps to the new burst. Entries tracked while
  // the limit was off have no history and start full.
  if (!was_rate_limited) {
    for (auto& [key, entry] : entries_) {
      entry.credit = FullCredit();
      entry.updated_ms = latest_now_ms_;
    }
  }
  while (idle_.size() > limits_.max_tracked_addresses) {
    Forget(entries_.find(idle_.front()));
  }
}

int ConnectionLimiter::connections(std::string_view ip) const {
  auto it = entries_.find(MakeKey(ip));
  return it == entries_.end() ? 0 : it->second.connections;
}

}  // namespace postern::engine
