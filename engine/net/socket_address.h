// Parsing "ip:port" / "[ipv6]:port" and opening listening sockets.
#ifndef POSTERN_ENGINE_NET_SOCKET_ADDRESS_H_
#define POSTERN_ENGINE_NET_SOCKET_ADDRESS_H_

#include <sys/socket.h>

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace postern::engine {

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
};

absl::StatusOr<SocketAddress> ParseSocketAddress(std::string_view text);

// The textual IP of a peer address ("127.0.0.1", "::1"; IPv4-mapped IPv6 is
// shown as IPv4) and its port.
std::string AddressIp(const sockaddr_storage& addr);
uint16_t AddressPort(const sockaddr_storage& addr);

// A non-blocking TCP listening socket with SO_REUSEPORT, so every worker
// binds its own socket on the same address and the kernel spreads
// connections across workers.
absl::StatusOr<int> OpenListenSocket(const SocketAddress& address, int backlog);

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_NET_SOCKET_ADDRESS_H_
