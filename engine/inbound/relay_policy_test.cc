#include "engine/inbound/relay_policy.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace postern::engine {
namespace {

RelayPolicy MakePolicy(const std::vector<std::string>& domains,
                       const std::vector<std::string>& networks) {
  absl::StatusOr<RelayPolicy> policy = RelayPolicy::Create(domains, networks);
  EXPECT_TRUE(policy.ok()) << policy.status();
  return policy.ok() ? *std::move(policy) : RelayPolicy();
}

TEST(RelayPolicyTest, ExactDomainIsCaseInsensitive) {
  const RelayPolicy policy = MakePolicy({"Example.com"}, {});
  EXPECT_TRUE(policy.IsAcceptedDomain("example.com"));
  EXPECT_TRUE(policy.IsAcceptedDomain("EXAMPLE.COM"));
  EXPECT_FALSE(policy.IsAcceptedDomain("sub.example.com"));
  EXPECT_FALSE(policy.IsAcceptedDomain("badexample.com"));
  EXPECT_FALSE(policy.IsAcceptedDomain("example.com.evil.net"));
  EXPECT_FALSE(policy.IsAcceptedDomain("example.co"));
  EXPECT_FALSE(policy.IsAcceptedDomain(""));
}

TEST(RelayPolicyTest, LeadingDotAlsoMatchesSubdomains) {
  const RelayPolicy policy = MakePolicy({".example.org"}, {});
  EXPECT_TRUE(policy.IsAcceptedDomain("example.org"));
  EXPECT_TRUE(policy.IsAcceptedDomain("mail.example.org"));
  EXPECT_TRUE(policy.IsAcceptedDomain("a.b.EXAMPLE.org"));
  EXPECT_FALSE(policy.IsAcceptedDomain("badexample.org"));
  EXPECT_FALSE(policy.IsAcceptedDomain(".example.org"));
  EXPECT_FALSE(policy.IsAcceptedDomain("example.org.evil.net"));
}

TEST(RelayPolicyTest, Ipv4Networks) {
  const RelayPolicy policy = MakePolicy({}, {"127.0.0.0/8", "192.0.2.128/25", "198.51.100.7"});
  EXPECT_TRUE(policy.IsTrusted("127.0.0.1"));
  EXPECT_TRUE(policy.IsTrusted("127.255.255.255"));
  EXPECT_FALSE(policy.IsTrusted("128.0.0.1"));
  EXPECT_TRUE(policy.IsTrusted("192.0.2.128"));
  EXPECT_TRUE(policy.IsTrusted("192.0.2.255"));
  EXPECT_FALSE(policy.IsTrusted("192.0.2.127"));
  EXPECT_TRUE(policy.IsTrusted("198.51.100.7"));
  EXPECT_FALSE(policy.IsTrusted("198.51.100.8"));
}

TEST(RelayPolicyTest, Ipv4MappedIpv6MatchesIpv4Network) {
  const RelayPolicy policy = MakePolicy({}, {"127.0.0.0/8"});
  EXPECT_TRUE(policy.IsTrusted("::ffff:127.0.0.1"));
  EXPECT_TRUE(policy.IsTrusted("::FFFF:7f00:1"));
  EXPECT_FALSE(policy.IsTrusted("::ffff:10.0.0.1"));
  EXPECT_FALSE(policy.IsTrusted("::1"));
  // IPv4-compatible (deprecated) is not IPv4-mapped.
  EXPECT_FALSE(policy.IsTrusted("::127.0.0.1"));
}

TEST(RelayPolicyTest, Ipv6Networks) {
  const RelayPolicy policy = MakePolicy({}, {"::1/128", "2001:db8:abcd::/48", "fe80::/10"});
  EXPECT_TRUE(policy.IsTrusted("::1"));
  EXPECT_FALSE(policy.IsTrusted("::2"));
  EXPECT_TRUE(policy.IsTrusted("2001:db8:abcd:1::25"));
  EXPECT_FALSE(policy.IsTrusted("2001:db8:abce::25"));
  EXPECT_TRUE(policy.IsTrusted("febf::1"));
  EXPECT_FALSE(policy.IsTrusted("fec0::1"));
  EXPECT_FALSE(policy.IsTrusted("127.0.0.1"));
}

TEST(RelayPolicyTest, ZeroPrefixMatchesEverythingOfItsFamilyMapping) {
  const RelayPolicy all_v4 = MakePolicy({}, {"0.0.0.0/0"});
  EXPECT_TRUE(all_v4.IsTrusted("203.0.113.9"));
  EXPECT_TRUE(all_v4.IsTrusted("::ffff:203.0.113.9"));
  EXPECT_FALSE(all_v4.IsTrusted("2001:db8::1"));
  const RelayPolicy all = MakePolicy({}, {"::/0"});
  EXPECT_TRUE(all.IsTrusted("2001:db8::1"));
  EXPECT_TRUE(all.IsTrusted("203.0.113.9"));
}

TEST(RelayPolicyTest, UnparseableClientIsNotTrusted) {
  const RelayPolicy policy = MakePolicy({}, {"::/0"});
  EXPECT_FALSE(policy.IsTrusted(""));
  EXPECT_FALSE(policy.IsTrusted("localhost"));
  EXPECT_FALSE(policy.IsTrusted("127.0.0.1:25"));
  EXPECT_FALSE(policy.IsTrusted(std::string(100, '1')));
}

TEST(RelayPolicyTest, BadConfigurationIsAnError) {
  const std::vector<std::string> bad_networks[] = {
      {"127.0.0.0/33"}, {"::/129"},      {"127.0.0.0/"},    {"127.0.0.0/-1"}, {"127.0.0.0/+8"},
      {"127.0.0.0/8x"}, {"10.0.0.1/8"},  {"fe80::1/10"},    {"not-an-ip"},    {""},
      {"/8"},           {"256.0.0.0/8"}, {"127.0.0.0/08 "},
  };
  for (const auto& networks : bad_networks) {
    absl::StatusOr<RelayPolicy> policy = RelayPolicy::Create({}, networks);
    EXPECT_FALSE(policy.ok()) << networks[0];
    EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_FALSE(RelayPolicy::Create({""}, {}).ok());
  EXPECT_FALSE(RelayPolicy::Create({"."}, {}).ok());
}

TEST(RelayPolicyTest, MayRelay) {
  const RelayPolicy policy = MakePolicy({"example.com"}, {"10.0.0.0/8"});
  EXPECT_TRUE(policy.MayRelay("203.0.113.1", "example.com", false));  // inbound
  EXPECT_FALSE(policy.MayRelay("203.0.113.1", "gmail.com", false));   // open relay
  EXPECT_TRUE(policy.MayRelay("10.1.2.3", "gmail.com", false));       // trusted
  EXPECT_TRUE(policy.MayRelay("203.0.113.1", "gmail.com", true));     // authenticated
  EXPECT_FALSE(policy.MayRelay("203.0.113.1", "", false));
}

TEST(RelayPolicyTest, DefaultPolicyDeniesEverything) {
  const RelayPolicy policy;
  EXPECT_FALSE(policy.MayRelay("127.0.0.1", "example.com", false));
  EXPECT_TRUE(policy.MayRelay("127.0.0.1", "example.com", true));
}

}  // namespace
}  // namespace postern::engine
