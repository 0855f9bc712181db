#include "engine/outbound/next_hop.h"

#include <arpa/inet.h>

#include <algorithm>
#include <set>
#include <utility>

#include "absl/random/distributions.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace postern::engine {
namespace {

// The canonical text of an IP address, or nullopt if `text` is not one.
std::optional<std::string> CanonicalIp(std::string_view text, int* family = nullptr) {
  std::string s(text);
  unsigned char buf[16];
  char out[INET6_ADDRSTRLEN];
  for (int af : {AF_INET, AF_INET6}) {
    if (inet_pton(af, s.c_str(), buf) == 1 && inet_ntop(af, buf, out, sizeof(out)) != nullptr) {
      if (family != nullptr) *family = af;
      return std::string(out);
    }
  }
  return std::nullopt;
}

std::string Lower(std::string_view s) {
  return absl::AsciiStrToLower(absl::string_view(s.data(), s.size()));
}

// "mx.example." -> "mx.example"; the root stays ".".
std::string NormalizeHost(std::string_view host) {
  std::string h = Lower(host);
  if (h.size() > 1 && h.back() == '.') h.pop_back();
  if (h.empty()) h = ".";
  return h;
}

bool RouteMatches(std::string_view pattern, std::string_view domain) {
  if (domain.empty() || pattern.empty()) return false;
  if (pattern.front() != '.') return pattern == domain;
  // ".example.com" matches "example.com" and "*.example.com".
  std::string_view bare = pattern.substr(1);
  if (domain == bare) return true;
  return domain.size() > pattern.size() && domain.substr(domain.size() - pattern.size()) == pattern;
}

// RFC 5321 4.1.3 address literal: "[192.0.2.1]" or "[IPv6:2001:db8::1]".
std::optional<std::string> AddressLiteral(std::string_view domain) {
  if (domain.size() < 3 || domain.front() != '[' || domain.back() != ']') return std::nullopt;
  std::string_view inner = domain.substr(1, domain.size() - 2);
  int family = 0;
  if (inner.size() > 5 && absl::EqualsIgnoreCase(absl::string_view(inner.data(), 5), "ipv6:")) {
    std::optional<std::string> ip = CanonicalIp(inner.substr(5), &family);
    if (ip && family == AF_INET6) return ip;
    return std::nullopt;
  }
  std::optional<std::string> ip = CanonicalIp(inner, &family);
  if (ip && family == AF_INET) return ip;
  return std::nullopt;
}

NextHopPlan Failure(PlanKind kind, std::string status, std::string diagnostic) {
  NextHopPlan plan;
  plan.kind = kind;
  plan.status = std::move(status);
  plan.diagnostic = std::move(diagnostic);
  return plan;
}

}  // namespace

std::string HostAddress::Label() const { return absl::StrCat(host, "[", ip, "]"); }

absl::StatusOr<NextHop> ParseNextHop(std::string_view text, uint16_t default_port) {
  const std::string what = absl::StrCat("next hop \"", std::string(text), "\"");
  std::string_view host = text;
  std::string_view port_text;
  bool bracketed = false;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": missing ']'"));
    }
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return absl::InvalidArgumentError(absl::StrCat(what, ": junk after ']'"));
      }
      port_text = rest.substr(1);
      if (port_text.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": empty port"));
      }
    }
    bracketed = true;
  } else if (size_t colon = text.rfind(':'); colon != std::string_view::npos) {
    if (text.find(':') != colon) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": an IPv6 address needs brackets"));
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (port_text.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": empty port"));
    }
  }
  NextHop hop;
  hop.source = NextHop::Source::kRoute;
  hop.port = default_port;
  if (!port_text.empty()) {
    uint32_t port = 0;
    if (!absl::SimpleAtoi(absl::string_view(port_text.data(), port_text.size()), &port) ||
        port == 0 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": bad port"));
    }
    hop.port = static_cast<uint16_t>(port);
  }
  if (host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": empty host"));
  }
  if (std::optional<std::string> ip = CanonicalIp(host)) {
    hop.host = *ip;
    hop.ip_literal = true;
    return hop;
  }
  if (bracketed) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": brackets must hold an IP address"));
  }
  hop.host = NormalizeHost(host);
  if (hop.host == "." || hop.host.front() == '.' ||
      hop.host.find_first_of(" \t\r\n[]/@") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": bad host name"));
  }
  return hop;
}

absl::StatusOr<RouteTable> RouteTable::Create(const std::vector<RouteConfig>& routes,
                                              uint16_t smtp_port) {
  RouteTable table;
  std::set<std::string> seen;
  for (const RouteConfig& route : routes) {
    std::string domain = Lower(route.domain);
    if (domain.empty() || domain == ".") {
      return absl::InvalidArgumentError("route with an empty domain");
    }
    if (!seen.insert(domain).second) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate route for ", domain));
    }
    absl::StatusOr<NextHop> hop = ParseNextHop(route.next_hop, smtp_port);
    if (!hop.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("route for ", domain, ": ", hop.status().message()));
    }
    table.entries_.push_back({std::move(domain), *std::move(hop)});
  }
  return table;
}

const NextHop* RouteTable::Match(std::string_view domain) const {
  std::string d = Lower(domain);
  const Entry* best = nullptr;
  for (const Entry& e : entries_) {
    if (!RouteMatches(e.domain, d)) continue;
    if (e.domain.front() != '.') return &e.hop;  // exact wins
    if (best == nullptr || e.domain.size() > best->domain.size()) best = &e;
  }
  return best == nullptr ? nullptr : &best->hop;
}

std::optional<NextHopPlan> PlanWithoutDns(std::string_view domain, const RouteTable& routes,
                                          uint16_t smtp_port) {
  if (const NextHop* hop = routes.Match(domain)) {
    NextHopPlan plan;
    plan.hops.push_back(*hop);
    return plan;
  }
  if (std::optional<std::string> ip = AddressLiteral(domain)) {
    NextHopPlan plan;
    plan.hops.push_back({*ip, smtp_port, true, 0, NextHop::Source::kAddressLiteral});
    return plan;
  }
  return std::nullopt;
}

NextHopPlan PlanFromMx(std::string_view domain, const absl::StatusOr<std::vector<MxRecord>>& mx,
                       uint16_t smtp_port, absl::BitGenRef rng) {
  std::string name = NormalizeHost(domain);
  if (!mx.ok()) {
    std::string why =
        absl::StrCat("Name service error for name=", name, " type=MX: ", mx.status().message());
    switch (mx.status().code()) {
      case absl::StatusCode::kNotFound:
        return Failure(PlanKind::kPermanent, "5.4.4",
                       absl::StrCat("Host or domain name not found. ", why));
      case absl::StatusCode::kInvalidArgument:
        return Failure(PlanKind::kPermanent, "5.1.2",
                       absl::StrCat("Bad destination domain. ", why));
      default:
        return Failure(PlanKind::kTemporary, "4.4.3",
                       absl::StrCat("Host or domain name lookup failed. ", why));
    }
  }
  NextHopPlan plan;
  if (mx->empty()) {  // RFC 5321 5.1: the domain is its own (implicit) MX.
    plan.hops.push_back({name, smtp_port, false, 0, NextHop::Source::kImplicitMx});
    return plan;
  }
  std::vector<MxRecord> records;
  for (const MxRecord& r : *mx) {
    std::string exchange = NormalizeHost(r.exchange);
    if (exchange != ".") records.push_back({r.preference, std::move(exchange)});
  }
  if (records.empty()) {  // only null MX records (RFC 7505)
    return Failure(PlanKind::kPermanent, "5.1.10",
                   absl::StrCat("domain does not accept mail (null MX): ", name));
  }
  // Lowest preference first; a host listed twice keeps its lowest preference.
  std::stable_sort(records.begin(), records.end(), [](const MxRecord& a, const MxRecord& b) {
    return a.preference < b.preference;
  });
  std::set<std::string> seen;
  for (MxRecord& r : records) {
    std::string_view exchange = r.exchange;
    if (exchange.size() > 2 && exchange.front() == '[' && exchange.back() == ']') {
      exchange = exchange.substr(1, exchange.size() - 2);
    }
    NextHop hop{std::string(exchange), smtp_port, false, r.preference, NextHop::Source::kMx};
    if (std::optional<std::string> ip = CanonicalIp(exchange)) {
      hop.host = *ip;
      hop.ip_literal = true;
    } else {
      hop.host = r.exchange;
    }
    if (seen.insert(hop.host).second) plan.hops.push_back(std::move(hop));
  }
  // Shuffle each run of equal preference (Fisher-Yates).
  for (size_t begin = 0; begin < plan.hops.size();) {
    size_t end = begin + 1;
    while (end < plan.hops.size() && plan.hops[end].preference == plan.hops[begin].preference)
      ++end;
    for (size_t i = end - 1; i > begin; --i) {
      size_t j = absl::Uniform<size_t>(absl::IntervalClosedClosed, rng, begin, i);
      std::swap(plan.hops[i], plan.hops[j]);
    }
    begin = end;
  }
  return plan;
}

AddressPlan OrderDestinations(const std::vector<NextHop>& hops, const AddressAnswers& answers) {
  AddressPlan plan;
  std::set<std::pair<std::string, uint16_t>> seen;
  bool temporary = false;
  std::vector<std::string> errors;
  auto add = [&](const NextHop& hop, const std::string& ip) {
    if (seen.insert({ip, hop.port}).second) plan.destinations.push_back({hop.host, ip, hop.port});
  };
  for (const NextHop& hop : hops) {
    if (hop.ip_literal) {
      add(hop, hop.host);
      continue;
    }
    auto it = answers.find(hop.host);
    if (it == answers.end()) {
      temporary = true;
      errors.push_back(absl::StrCat(hop.host, ": not looked up"));
      continue;
    }
    const absl::StatusOr<std::vector<std::string>>& result = it->second;
    if (!result.ok()) {
      if (result.status().code() != absl::StatusCode::kNotFound &&
          result.status().code() != absl::StatusCode::kInvalidArgument) {
        temporary = true;
      }
      errors.push_back(absl::StrCat(hop.host, ": ", result.status().message()));
      continue;
    }
    if (result->empty()) errors.push_back(absl::StrCat(hop.host, ": no A or AAAA record"));
    for (const std::string& ip : *result) add(hop, ip);
  }
  if (!plan.destinations.empty()) return plan;
  if (hops.empty()) errors.push_back("no hosts");
  if (temporary) {
    plan.kind = PlanKind::kTemporary;
    plan.status = "4.4.3";
    plan.diagnostic =
        absl::StrCat("Host or domain name lookup failed: ", absl::StrJoin(errors, "; "));
  } else {
    plan.kind = PlanKind::kPermanent;
    plan.status = "5.4.4";
    plan.diagnostic = absl::StrCat("Host or domain name not found: ", absl::StrJoin(errors, "; "));
  }
  return plan;
}

}  // namespace postern::engine
