#include "engine/inbound/auth_throttle.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>

namespace postern::engine {

AuthThrottle::AuthThrottle(AuthThrottleOptions options) : options_(options) {}

std::string AuthThrottle::Key(std::string_view client_ip) {
  // inet_pton needs a NUL-terminated string; addresses are short.
  char buf[INET6_ADDRSTRLEN + 1];
  if (client_ip.empty() || client_ip.size() >= sizeof(buf)) return std::string(client_ip);
  std::memcpy(buf, client_ip.data(), client_ip.size());
  buf[client_ip.size()] = '\0';
  unsigned char bytes[16];
  if (inet_pton(AF_INET, buf, bytes) == 1) return std::string("4") + std::string(buf);
  if (inet_pton(AF_INET6, buf, bytes) != 1) return std::string(client_ip);
  static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(bytes, kMapped, sizeof(kMapped)) == 0) {
    char v4[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, bytes + 12, v4, sizeof(v4));
    return std::string("4") + v4;
  }
  return std::string("6") + std::string(reinterpret_cast<const char*>(bytes), 8);
}

void AuthThrottle::Expire(Failures* failures, int64_t now_ms) const {
  while (!failures->empty() && now_ms - failures->front() >= options_.window_ms) {
    failures->pop_front();
  }
}

bool AuthThrottle::Allowed(std::string_view client_ip, int64_t now_ms) {
  const auto it = entries_.find(Key(client_ip));
  if (it == entries_.end()) return true;
  Expire(&it->second, now_ms);
  if (it->second.empty()) {
    entries_.erase(it);
    return true;
  }
  return it->second.size() < options_.max_failures;
}

void AuthThrottle::Failed(std::string_view client_ip, int64_t now_ms) {
  std::string key = Key(client_ip);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (entries_.size() >= options_.max_addresses) MakeRoom(now_ms);
    it = entries_.emplace(std::move(key), Failures()).first;
  }
  Failures& failures = it->second;
  Expire(&failures, now_ms);
  failures.push_back(now_ms);
  // Only the newest max_failures matter for the decision.
  while (failures.size() > options_.max_failures) failures.pop_front();
}

void AuthThrottle::Succeeded(std::string_view client_ip) { entries_.erase(Key(client_ip)); }

void AuthThrottle::MakeRoom(int64_t now_ms) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    Expire(&it->second, now_ms);
    it = it->second.empty() ? entries_.erase(it) : std::next(it);
  }
  if (entries_.size() < options_.max_addresses || entries_.empty()) return;
  // Still full: forget the address that has been quiet longest.
  auto oldest = std::min_element(
      entries_.begin(), entries_.end(),
      [](const auto& a, const auto& b) { return a.second.back() < b.second.back(); });
  entries_.erase(oldest);
}

}  // namespace postern::engine
