#include "engine/inbound/network_list.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace postern::engine {
namespace {

NetworkList Make(const std::vector<std::string>& networks) {
  absl::StatusOr<NetworkList> list = NetworkList::Create(networks, "network");
  EXPECT_TRUE(list.ok()) << list.status();
  return list.ok() ? *std::move(list) : NetworkList();
}

TEST(NetworkListTest, EmptyContainsNothing) {
  const NetworkList list;
  EXPECT_TRUE(list.empty());
  EXPECT_FALSE(list.Contains("127.0.0.1"));
  EXPECT_FALSE(list.Contains("::1"));
  EXPECT_TRUE(Make({}).empty());
}

TEST(NetworkListTest, HostsAndPrefixes) {
  const NetworkList list = Make({"127.0.0.2/32", "10.9.0.0/16", "2001:db8::1"});
  EXPECT_FALSE(list.empty());
  EXPECT_TRUE(list.Contains("127.0.0.2"));
  EXPECT_FALSE(list.Contains("127.0.0.1"));
  EXPECT_TRUE(list.Contains("10.9.200.1"));
  EXPECT_FALSE(list.Contains("10.10.0.1"));
  EXPECT_TRUE(list.Contains("2001:db8::1"));
  EXPECT_FALSE(list.Contains("2001:db8::2"));
  // A v4 peer on a dual-stack socket arrives IPv4-mapped.
  EXPECT_TRUE(list.Contains("::ffff:127.0.0.2"));
  EXPECT_FALSE(list.Contains(""));
  EXPECT_FALSE(list.Contains("not-an-address"));
}

TEST(NetworkListTest, MalformedEntriesAreRefusedAndNamed) {
  for (const char* bad : {"", "lb.example", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.1/8",
                          "2001:db8::/129", "2001:db8::1/32"}) {
    absl::StatusOr<NetworkList> list = NetworkList::Create({bad}, "PROXY sender");
    EXPECT_FALSE(list.ok()) << bad;
    EXPECT_NE(list.status().message().find("PROXY sender"), absl::string_view::npos)
        << list.status();
  }
}

}  // namespace
}  // namespace postern::engine
