// NextHop: where outbound mail for a recipient domain goes, in the order to
// try. Pure: DNS answers, the routes and the random source are passed in;
// engine/outbound/dns_resolver.h fetches the answers.
//
// The steps, as the delivery code drives them:
//  1. PlanWithoutDns(): a static route (config `routes`) for the domain, or a
//     domain that is an address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]"),
//     decides the hop with no MX lookup.
//  2. Otherwise look up the domain's MX and call PlanFromMx():
//     - MX records: hosts by preference, lowest first; hosts of equal
//       preference in random order (RFC 5321 5.1) so load spreads; a host
//       listed twice keeps its lowest preference; port `smtp_port`.
//     - NOERROR without MX (an empty list): the domain itself, the implicit
//       MX of RFC 5321 5.1.
//     - a null MX (RFC 7505: the only record, exchange "."): permanent
//       failure, status 5.1.10. A "." record beside real ones is ignored.
//     - an exchange that is an IP address ("192.0.2.1" or "[192.0.2.1]"),
//       which RFC 5321 forbids but some domains publish, is used as that
//       address rather than looked up as a name; an exchange equal to the
//       domain itself is an ordinary host.
//     - NXDOMAIN (kNotFound): permanent failure 5.4.4; a malformed domain
//       (kInvalidArgument) 5.1.2; anything else (kUnavailable: SERVFAIL,
//       timeout) temporary 4.4.3.
//  3. Look up each hop whose ip_literal is false (DnsResolver::LookupAddresses)
//     and call OrderDestinations() for the addresses to connect to, in order.
//
// Failures are outcomes, not errors: a plan says whether it is temporary or
// permanent, with an enhanced status code and a diagnostic, the shape
// queue::AttemptResult takes (reason DEFER_REASON_DNS when temporary).
//
// Route domains match as partner domains do (engine/inbound/inbound_policy.h):
// "example.com" that domain only, ".example.com" it and every subdomain;
// an exact entry wins over a suffix entry and a longer suffix over a shorter
// one. ASCII case-insensitive, otherwise literal.
//
// Thread-safety: RouteTable is immutable once built and may be shared by
// const reference; the functions keep no state.
#ifndef POSTERN_ENGINE_OUTBOUND_NEXT_HOP_H_
#define POSTERN_ENGINE_OUTBOUND_NEXT_HOP_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/random/bit_gen_ref.h"
#include "absl/status/statusor.h"

namespace postern::engine {

// One MX record as DnsResolver returns it: exchange lower-cased without the
// trailing dot; the root (a null MX) is ".".
struct MxRecord {
  uint16_t preference = 0;
  std::string exchange;

  bool operator==(const MxRecord&) const = default;
};

// A host to deliver to: a name to look up, or an IP address.
struct NextHop {
  enum class Source { kRoute, kMx, kImplicitMx, kAddressLiteral };

  std::string host;  // lower-case name, or the IP in text form (no brackets)
  uint16_t port = 25;
  bool ip_literal = false;  // host is an IP address: no DNS lookup
  uint16_t preference = 0;  // MX preference; 0 for the other sources
  Source source = Source::kMx;

  bool operator==(const NextHop&) const = default;
};

// One address to connect to.
struct HostAddress {
  std::string host;  // the NextHop's host
  std::string ip;    // "192.0.2.1", "2001:db8::1"
  uint16_t port = 25;

  // "mx.example[192.0.2.1]", the remote_mta form in queue records.
  std::string Label() const;
  bool operator==(const HostAddress&) const = default;
};

// What a planning step decided. kOk carries the hops (or destinations);
// the failures carry an enhanced status code ("5.1.10", "4.4.3") and a
// diagnostic for the queue record and the bounce.
enum class PlanKind { kOk, kTemporary, kPermanent };

struct NextHopPlan {
  PlanKind kind = PlanKind::kOk;
  std::vector<NextHop> hops;  // kOk: never empty
  std::string status;
  std::string diagnostic;
};

struct AddressPlan {
  PlanKind kind = PlanKind::kOk;
  std::vector<HostAddress> destinations;  // kOk: never empty, no duplicates
  std::string status;
  std::string diagnostic;
};

// A configured static route.
struct RouteConfig {
  std::string domain;    // "example.com" or ".example.com"
  std::string next_hop;  // "host:port", "[ip]:port", "ip:port" (IPv4); the
                         // port may be left out (then smtp_port)
};

class RouteTable {
 public:
  // InvalidArgument for an empty or duplicate domain (case-insensitive), a
  // next hop that does not parse, or port 0. A route's host name is looked
  // up for addresses directly (no MX lookup: the route names the host).
  static absl::StatusOr<RouteTable> Create(const std::vector<RouteConfig>& routes,
                                           uint16_t smtp_port);

  RouteTable() = default;  // no routes

  // The hop configured for `domain`, or nullptr. The pointer lives as long
  // as the table.
  const NextHop* Match(std::string_view domain) const;

 private:
  struct Entry {
    std::string domain;  // lower-cased, as configured (leading dot kept)
    NextHop hop;
  };
  std::vector<Entry> entries_;
};

// Parses "host:port", "[ip]:port", "ip:port" or a bare host/IP (default_port).
// Exposed for config validation.
absl::StatusOr<NextHop> ParseNextHop(std::string_view text, uint16_t default_port);

// Step 1: the plan for `domain` if no DNS is needed (a route or an address
// literal), else nullopt.
std::optional<NextHopPlan> PlanWithoutDns(std::string_view domain, const RouteTable& routes,
                                          uint16_t smtp_port);

// Step 2: the plan from the MX answer for `domain` (rules at the top).
NextHopPlan PlanFromMx(std::string_view domain, const absl::StatusOr<std::vector<MxRecord>>& mx,
                       uint16_t smtp_port, absl::BitGenRef rng);

// The answers of step 3, keyed by NextHop::host.
using AddressAnswers = std::map<std::string, absl::StatusOr<std::vector<std::string>>, std::less<>>;

// Step 3: the addresses of `hops`, hop by hop in order, each hop's addresses
// in the order the resolver gave them; an address already listed (same IP
// and port) is not repeated. Hops whose lookup failed are skipped. With no
// address at all: temporary (4.4.3) if some lookup failed temporarily or is
// missing from `answers`, else permanent (5.4.4: every host is unknown or has
// no address).
AddressPlan OrderDestinations(const std::vector<NextHop>& hops, const AddressAnswers& answers);

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_OUTBOUND_NEXT_HOP_H_
