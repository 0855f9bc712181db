#include "engine/net/socket_address.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <unistd.h>

namespace postern::engine {
namespace {

TEST(ParseSocketAddress, Ipv4AndIpv6) {
  auto v4 = ParseSocketAddress("127.0.0.1:2525");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->storage.ss_family, AF_INET);
  EXPECT_EQ(AddressIp(v4->storage), "127.0.0.1");
  EXPECT_EQ(AddressPort(v4->storage), 2525);
  auto v6 = ParseSocketAddress("[::1]:25");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->storage.ss_family, AF_INET6);
  EXPECT_EQ(AddressIp(v6->storage), "::1");
  EXPECT_EQ(AddressPort(v6->storage), 25);
}

TEST(ParseSocketAddress, RejectsMalformed) {
  for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
                          "127.0.0.1:25x", "host.example:25", "[::1:25", "[::1]25", "::1:25"}) {
    EXPECT_FALSE(ParseSocketAddress(bad).ok()) << bad;
  }
}

TEST(AddressIp, MappedIpv4ShownAsIpv4) {
  sockaddr_storage ss{};
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  v6->sin6_family = AF_INET6;
  inet_pton(AF_INET6, "::ffff:10.1.2.3", &v6->sin6_addr);
  EXPECT_EQ(AddressIp(ss), "10.1.2.3");
}

TEST(OpenListenSocket, TwoSocketsShareAPortWithReusePort) {
  auto addr = ParseSocketAddress("127.0.0.1:0");
  // Port 0 is refused by the parser (a listener needs a fixed port), so bind
  // one socket to an ephemeral port first and reuse its number.
  EXPECT_FALSE(addr.ok());
  auto probe = ParseSocketAddress("127.0.0.1:1");
  ASSERT_TRUE(probe.ok());
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in any{};
  any.sin_family = AF_INET;
  any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&any), sizeof any), 0);
  socklen_t len = sizeof any;
  getsockname(s, reinterpret_cast<sockaddr*>(&any), &len);
  close(s);
  auto fixed = ParseSocketAddress("127.0.0.1:" + std::to_string(ntohs(any.sin_port)));
  ASSERT_TRUE(fixed.ok());
  auto a = OpenListenSocket(*fixed, 16);
  auto b = OpenListenSocket(*fixed, 16);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  close(*a);
  close(*b);
}

}  // namespace
}  // namespace postern::engine
