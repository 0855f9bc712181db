#include "control/listen_probe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace postern::control {
namespace {

bool Parse(const std::string& address, sockaddr_storage* out, socklen_t* len) {
  std::string host;
  std::string port_text;
  if (!address.empty() && address.front() == '[') {
    size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return false;
    }
    host = address.substr(1, close - 1);
    port_text = address.substr(close + 2);
  } else {
    size_t colon = address.rfind(':');
    if (colon == std::string::npos) return false;
    host = address.substr(0, colon);
    port_text = address.substr(colon + 1);
  }
  unsigned port = 0;
  auto [end, err] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (err != std::errc() || end != port_text.data() + port_text.size() || port > 65535) {
    return false;
  }
  *out = {};
  auto* v4 = reinterpret_cast<sockaddr_in*>(out);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(out);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in);
    return true;
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

// 0 if a socket could bind `addr` now, else the errno.
int TryBind(const sockaddr_storage& addr, socklen_t len) {
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (addr.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  int rc = bind(fd, reinterpret_cast<const sockaddr*>(&addr), len);
  int e = errno;
  close(fd);
  return rc == 0 ? 0 : e;
}

}  // namespace

absl::Status ProbeListenAddress(const std::string& address, absl::Duration in_use_grace) {
  sockaddr_storage addr;
  socklen_t len = 0;
  if (!Parse(address, &addr, &len)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot listen on ", address, ": not ip:port or [ipv6]:port"));
  }
  const absl::Time deadline = absl::Now() + in_use_grace;
  int e = TryBind(addr, len);
  while (e == EADDRINUSE && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
    e = TryBind(addr, len);
  }
  if (e != 0) return absl::ErrnoToStatus(e, absl::StrCat("cannot listen on ", address));
  return absl::OkStatus();
}

}  // namespace postern::control
