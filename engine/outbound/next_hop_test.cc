#include "engine/outbound/next_hop.h"

#include <random>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace postern::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> Hosts(const NextHopPlan& plan) {
  std::vector<std::string> hosts;
  for (const NextHop& hop : plan.hops) hosts.push_back(hop.host);
  return hosts;
}

RouteTable Routes(const std::vector<RouteConfig>& routes) {
  absl::StatusOr<RouteTable> table = RouteTable::Create(routes, 25);
  EXPECT_TRUE(table.ok()) << table.status();
  return table.ok() ? *std::move(table) : RouteTable();
}

TEST(ParseNextHopTest, Forms) {
  absl::StatusOr<NextHop> hop = ParseNextHop("relay.example:2525", 25);
  ASSERT_TRUE(hop.ok()) << hop.status();
  EXPECT_EQ(hop->host, "relay.example");
  EXPECT_EQ(hop->port, 2525);
  EXPECT_FALSE(hop->ip_literal);
  EXPECT_EQ(hop->source, NextHop::Source::kRoute);

  hop = ParseNextHop("10.0.0.5:25", 587);
  ASSERT_TRUE(hop.ok());
  EXPECT_EQ(hop->host, "10.0.0.5");
  EXPECT_EQ(hop->port, 25);
  EXPECT_TRUE(hop->ip_literal);

  hop = ParseNextHop("[2001:DB8::0:1]:26", 25);
  ASSERT_TRUE(hop.ok());
  EXPECT_EQ(hop->host, "2001:db8::1");  // canonical text
  EXPECT_EQ(hop->port, 26);
  EXPECT_TRUE(hop->ip_literal);

  hop = ParseNextHop("[192.0.2.1]", 2525);
  ASSERT_TRUE(hop.ok());
  EXPECT_EQ(hop->host, "192.0.2.1");
  EXPECT_EQ(hop->port, 2525);

  hop = ParseNextHop("Relay.Example.", 25);
  ASSERT_TRUE(hop.ok());
  EXPECT_EQ(hop->host, "relay.example");
  EXPECT_EQ(hop->port, 25);
}

TEST(ParseNextHopTest, Rejects) {
  for (const char* bad :
       {"", ":25", "host:", "host:0", "host:65536", "host:x", "2001:db8::1", "[2001:db8::1",
        "[relay.example]:25", "[192.0.2.1]x", "[192.0.2.1]:", ".relay.example:25", "a b:25"}) {
    EXPECT_FALSE(ParseNextHop(bad, 25).ok()) << bad;
  }
}

TEST(RouteTableTest, CreateRejectsBadConfig) {
  EXPECT_FALSE(RouteTable::Create({{"", "10.0.0.5:25"}}, 25).ok());
  EXPECT_FALSE(RouteTable::Create({{"a.example", "10.0.0.5:25"}, {"A.example", "h:25"}}, 25).ok());
  absl::StatusOr<RouteTable> bad = RouteTable::Create({{"a.example", "[nope]:25"}}, 25);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("a.example"));
}

TEST(RouteTableTest, MatchingExactSuffixAndLongest) {
  RouteTable routes = Routes({
      {"example.com", "10.0.0.1:25"},
      {".example.com", "10.0.0.2:25"},
      {".sub.example.com", "10.0.0.3:25"},
      {"exact.example.org", "10.0.0.4:25"},
  });
  auto host = [&](const char* domain) -> std::string {
    const NextHop* hop = routes.Match(domain);
    return hop == nullptr ? "" : hop->host;
  };
  EXPECT_EQ(host("example.com"), "10.0.0.1");  // exact beats ".example.com"
  EXPECT_EQ(host("EXAMPLE.com"), "10.0.0.1");
  EXPECT_EQ(host("a.example.com"), "10.0.0.2");
  EXPECT_EQ(host("sub.example.com"), "10.0.0.3");
  EXPECT_EQ(host("x.y.sub.example.com"), "10.0.0.3");  // longer suffix wins
  EXPECT_EQ(host("exact.example.org"), "10.0.0.4");
  EXPECT_EQ(host("a.exact.example.org"), "");  // exact entries cover no subdomain
  EXPECT_EQ(host("badexample.com"), "");       // not a label boundary
  EXPECT_EQ(host("example.net"), "");
  EXPECT_EQ(host(""), "");
}

TEST(PlanTest, RouteComesFirst) {
  RouteTable routes = Routes({{".example.com", "relay.example.net:2525"}});
  std::optional<NextHopPlan> plan = PlanWithoutDns("mail.example.com", routes, 25);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->kind, PlanKind::kOk);
  ASSERT_EQ(plan->hops.size(), 1u);
  EXPECT_EQ(plan->hops[0], (NextHop{"relay.example.net", 2525, false, 0, NextHop::Source::kRoute}));
  EXPECT_FALSE(PlanWithoutDns("example.org", routes, 25).has_value());
}

TEST(PlanTest, AddressLiteralDomain) {
  RouteTable routes;
  std::optional<NextHopPlan> plan = PlanWithoutDns("[192.0.2.7]", routes, 2525);
  ASSERT_TRUE(plan.has_value());
  ASSERT_EQ(plan->hops.size(), 1u);
  EXPECT_EQ(plan->hops[0], (NextHop{"192.0.2.7", 2525, true, 0, NextHop::Source::kAddressLiteral}));
  plan = PlanWithoutDns("[IPv6:2001:db8::7]", routes, 25);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->hops[0].host, "2001:db8::7");
  // Malformed literals are not address literals (the MX lookup refuses them).
  EXPECT_FALSE(PlanWithoutDns("[2001:db8::7]", routes, 25).has_value());
  EXPECT_FALSE(PlanWithoutDns("[IPv6:192.0.2.1]", routes, 25).has_value());
}

TEST(PlanTest, MxByPreference) {
  std::mt19937 rng(1);
  std::vector<MxRecord> mx = {
      {20, "mx2.example.com"}, {10, "MX1.example.com."}, {30, "mx3.example.com"}};
  NextHopPlan plan = PlanFromMx("example.com", mx, 25, rng);
  ASSERT_EQ(plan.kind, PlanKind::kOk);
  EXPECT_THAT(Hosts(plan), ElementsAre("mx1.example.com", "mx2.example.com", "mx3.example.com"));
  EXPECT_EQ(plan.hops[0], (NextHop{"mx1.example.com", 25, false, 10, NextHop::Source::kMx}));
  EXPECT_EQ(plan.hops[2].preference, 30);
}

TEST(PlanTest, EqualPreferencesShuffledWithinTheirGroupOnly) {
  std::vector<MxRecord> mx = {{10, "a.example"},
                              {10, "b.example"},
                              {10, "c.example"},
                              {5, "first.example"},
                              {20, "last.example"}};
  std::set<std::vector<std::string>> orders;
  for (uint32_t seed = 0; seed < 200; ++seed) {
    std::mt19937 rng(seed);
    NextHopPlan plan = PlanFromMx("example", mx, 25, rng);
    std::vector<std::string> hosts = Hosts(plan);
    ASSERT_EQ(hosts.size(), 5u);
    EXPECT_EQ(hosts.front(), "first.example");
    EXPECT_EQ(hosts.back(), "last.example");
    orders.insert({hosts[1], hosts[2], hosts[3]});
  }
  EXPECT_EQ(orders.size(), 6u);  // every permutation of the three shows up

  // The same random source gives the same order (the RNG is the only input).
  std::mt19937 r1(42), r2(42);
  EXPECT_EQ(Hosts(PlanFromMx("example", mx, 25, r1)), Hosts(PlanFromMx("example", mx, 25, r2)));
}

TEST(PlanTest, DuplicateHostKeepsLowestPreference) {
  std::mt19937 rng(1);
  std::vector<MxRecord> mx = {{30, "a.example"}, {10, "b.example"}, {20, "A.example."}};
  NextHopPlan plan = PlanFromMx("example", mx, 25, rng);
  EXPECT_THAT(Hosts(plan), ElementsAre("b.example", "a.example"));
  EXPECT_EQ(plan.hops[1].preference, 20);
}

TEST(PlanTest, NoMxMeansImplicitMx) {
  std::mt19937 rng(1);
  NextHopPlan plan = PlanFromMx("Example.ORG", std::vector<MxRecord>{}, 2525, rng);
  ASSERT_EQ(plan.kind, PlanKind::kOk);
  ASSERT_EQ(plan.hops.size(), 1u);
  EXPECT_EQ(plan.hops[0], (NextHop{"example.org", 2525, false, 0, NextHop::Source::kImplicitMx}));
}

TEST(PlanTest, NullMxIsPermanent) {
  std::mt19937 rng(1);
  NextHopPlan plan = PlanFromMx("nomail.example", std::vector<MxRecord>{{0, "."}}, 25, rng);
  EXPECT_EQ(plan.kind, PlanKind::kPermanent);
  EXPECT_EQ(plan.status, "5.1.10");
  EXPECT_THAT(plan.diagnostic, HasSubstr("domain does not accept mail (null MX)"));
  EXPECT_TRUE(plan.hops.empty());

  // A null MX beside real records is a misconfiguration: the real ones win.
  plan = PlanFromMx("mixed.example", std::vector<MxRecord>{{0, "."}, {10, "mx.example"}}, 25, rng);
  ASSERT_EQ(plan.kind, PlanKind::kOk);
  EXPECT_THAT(Hosts(plan), ElementsAre("mx.example"));
}

TEST(PlanTest, MxPointingAtIpOrAtTheDomainItself) {
  std::mt19937 rng(1);
  std::vector<MxRecord> mx = {{10, "192.0.2.1"}, {20, "[2001:db8::2]"}, {30, "example.net"}};
  NextHopPlan plan = PlanFromMx("example.net", mx, 25, rng);
  ASSERT_EQ(plan.kind, PlanKind::kOk);
  ASSERT_EQ(plan.hops.size(), 3u);
  EXPECT_EQ(plan.hops[0], (NextHop{"192.0.2.1", 25, true, 10, NextHop::Source::kMx}));
  EXPECT_EQ(plan.hops[1], (NextHop{"2001:db8::2", 25, true, 20, NextHop::Source::kMx}));
  EXPECT_EQ(plan.hops[2], (NextHop{"example.net", 25, false, 30, NextHop::Source::kMx}));
}

TEST(PlanTest, LookupFailures) {
  std::mt19937 rng(1);
  NextHopPlan plan = PlanFromMx("gone.example", absl::NotFoundError("NXDOMAIN"), 25, rng);
  EXPECT_EQ(plan.kind, PlanKind::kPermanent);
  EXPECT_EQ(plan.status, "5.4.4");
  EXPECT_THAT(plan.diagnostic, HasSubstr("gone.example"));

  plan = PlanFromMx("slow.example", absl::UnavailableError("timeout"), 25, rng);
  EXPECT_EQ(plan.kind, PlanKind::kTemporary);
  EXPECT_EQ(plan.status, "4.4.3");
  EXPECT_THAT(plan.diagnostic, HasSubstr("timeout"));

  plan = PlanFromMx("a..b", absl::InvalidArgumentError("malformed"), 25, rng);
  EXPECT_EQ(plan.kind, PlanKind::kPermanent);
  EXPECT_EQ(plan.status, "5.1.2");
}

TEST(OrderDestinationsTest, HopOrderThenAddressOrderWithoutDuplicates) {
  std::vector<NextHop> hops = {
      {"mx1.example", 25, false, 10, NextHop::Source::kMx},
      {"192.0.2.9", 25, true, 15, NextHop::Source::kMx},
      {"mx2.example", 25, false, 20, NextHop::Source::kMx},
      {"mx3.example", 25, false, 30, NextHop::Source::kMx},
  };
  AddressAnswers answers;
  answers.emplace("mx1.example", std::vector<std::string>{"2001:db8::1", "192.0.2.1"});
  answers.emplace("mx2.example", absl::UnavailableError("SERVFAIL"));
  answers.emplace("mx3.example", std::vector<std::string>{"192.0.2.1", "192.0.2.3"});
  AddressPlan plan = OrderDestinations(hops, answers);
  ASSERT_EQ(plan.kind, PlanKind::kOk);
  EXPECT_THAT(plan.destinations, ElementsAre(HostAddress{"mx1.example", "2001:db8::1", 25},
                                             HostAddress{"mx1.example", "192.0.2.1", 25},
                                             HostAddress{"192.0.2.9", "192.0.2.9", 25},
                                             HostAddress{"mx3.example", "192.0.2.3", 25}));
  EXPECT_EQ(plan.destinations[0].Label(), "mx1.example[2001:db8::1]");
}

TEST(OrderDestinationsTest, NoAddressTemporaryOrPermanent) {
  std::vector<NextHop> hops = {
      {"mx1.example", 25, false, 10, NextHop::Source::kMx},
      {"mx2.example", 25, false, 20, NextHop::Source::kMx},
  };
  AddressAnswers answers;
  answers.emplace("mx1.example", absl::NotFoundError("NXDOMAIN"));
  answers.emplace("mx2.example", std::vector<std::string>{});
  AddressPlan plan = OrderDestinations(hops, answers);
  EXPECT_EQ(plan.kind, PlanKind::kPermanent);
  EXPECT_EQ(plan.status, "5.4.4");
  EXPECT_THAT(plan.diagnostic, HasSubstr("mx1.example"));
  EXPECT_THAT(plan.diagnostic, HasSubstr("mx2.example"));

  answers.erase("mx2.example");
  answers.emplace("mx2.example", absl::UnavailableError("timeout"));
  plan = OrderDestinations(hops, answers);
  EXPECT_EQ(plan.kind, PlanKind::kTemporary);
  EXPECT_EQ(plan.status, "4.4.3");

  answers.erase("mx2.example");  // never looked up: cannot be called permanent
  plan = OrderDestinations(hops, answers);
  EXPECT_EQ(plan.kind, PlanKind::kTemporary);
}

TEST(OrderDestinationsTest, RoutePortIsKept) {
  std::vector<NextHop> hops = {{"relay.example", 2525, false, 0, NextHop::Source::kRoute}};
  AddressAnswers answers;
  answers.emplace("relay.example", std::vector<std::string>{"10.0.0.5"});
  AddressPlan plan = OrderDestinations(hops, answers);
  ASSERT_EQ(plan.kind, PlanKind::kOk);
  EXPECT_THAT(plan.destinations, ElementsAre(HostAddress{"relay.example", "10.0.0.5", 2525}));
}

}  // namespace
}  // namespace postern::engine
