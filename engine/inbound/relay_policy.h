// RelayPolicy: who may send mail to which domains through this node (the
// open-relay guard). Immutable once built; safe to share between threads and
// sessions by const pointer.
//
// Rules:
//  - A recipient domain is accepted if it equals an accepted domain; an entry
//    written with a leading dot (".example.com") also matches every subdomain
//    ("a.b.example.com") besides "example.com" itself. Matching is ASCII
//    case-insensitive and otherwise exact (no trailing-dot folding).
//  - A client is trusted if its address lies in one of the trusted networks
//    (NetworkList: IPv4 compared as IPv4-mapped IPv6, so "::ffff:127.0.0.1"
//    matches 127.0.0.0/8). Unparseable client addresses are never trusted.
//  - MayRelay: authenticated, or trusted, or the domain is accepted.
#ifndef POSTERN_ENGINE_INBOUND_RELAY_POLICY_H_
#define POSTERN_ENGINE_INBOUND_RELAY_POLICY_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/inbound/network_list.h"

namespace postern::engine {

class RelayPolicy {
 public:
  // accepted_domains: "example.com" (exact) or ".example.com" (subdomains).
  // trusted_networks: CIDR ("10.0.0.0/8", "2001:db8::/32") or a single
  // address. Returns InvalidArgument for an empty or malformed entry, or a
  // CIDR with host bits set ("10.0.0.1/8"), which is almost always a typo.
  static absl::StatusOr<RelayPolicy> Create(const std::vector<std::string>& accepted_domains,
                                            const std::vector<std::string>& trusted_networks);

  // A policy that accepts no domain and trusts nobody.
  RelayPolicy() = default;

  bool IsTrusted(std::string_view client_ip) const;
  bool IsAcceptedDomain(std::string_view domain) const;
  bool MayRelay(std::string_view client_ip, std::string_view recipient_domain,
                bool authenticated) const;

 private:
  std::vector<std::string> exact_domains_;    // lower-case
  std::vector<std::string> domain_suffixes_;  // lower-case, with the leading dot
  NetworkList trusted_;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_INBOUND_RELAY_POLICY_H_
