// NetworkList: a set of IP networks written as CIDR, and the test whether an
// address lies in one of them. Used for relay.trusted_networks (RelayPolicy)
// and a listener's proxy_protocol_from. Immutable once built.
//
// Rules:
//  - An entry is "10.0.0.0/8", "2001:db8::/32" or a bare address (one host).
//    Host bits set past the prefix ("10.0.0.1/8") are refused: almost always
//    a typo for a different network.
//  - IPv4 addresses are compared as IPv4-mapped IPv6 (::ffff:a.b.c.d), so
//    "::ffff:127.0.0.1" matches 127.0.0.0/8 and a v4 address matches
//    ::ffff:0:0/96. Unparseable addresses are in no list.
#ifndef POSTERN_ENGINE_INBOUND_NETWORK_LIST_H_
#define POSTERN_ENGINE_INBOUND_NETWORK_LIST_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace postern::engine {

class NetworkList {
 public:
  // InvalidArgument for an empty or malformed entry or one with host bits
  // set; `what` names an entry in the message ("trusted network").
  static absl::StatusOr<NetworkList> Create(const std::vector<std::string>& networks,
                                            std::string_view what);

  // The empty list: contains no address.
  NetworkList() = default;

  bool Contains(std::string_view ip) const;
  bool empty() const { return networks_.empty(); }

 private:
  struct Network {
    std::array<uint8_t, 16> address;  // IPv6 or IPv4-mapped, host bits zero
    int prefix_length;                // 0..128
  };

  std::vector<Network> networks_;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_INBOUND_NETWORK_LIST_H_
