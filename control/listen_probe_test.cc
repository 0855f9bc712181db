#include "control/listen_probe.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace postern::control {
namespace {

// A listening socket on 127.0.0.1 (an ephemeral port), SO_REUSEPORT if asked,
// as the workers open theirs.
int Listen(bool reuseport, uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(listen(fd, 8), 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *port = ntohs(addr.sin_port);
  return fd;
}

TEST(ListenProbe, FreeAddressIsOkAndStaysFree) {
  uint16_t port = 0;
  int fd = Listen(false, &port);
  close(fd);  // now free
  const std::string address = absl::StrCat("127.0.0.1:", port);
  absl::Status st = ProbeListenAddress(address);
  EXPECT_TRUE(st.ok()) << st;
  // The probe kept nothing: the address can still be bound.
  int again = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  EXPECT_EQ(bind(again, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  close(again);
}

TEST(ListenProbe, PlainListenerIsInUse) {
  uint16_t port = 0;
  int fd = Listen(false, &port);
  absl::Status st = ProbeListenAddress(absl::StrCat("127.0.0.1:", port));
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.message(),
            absl::StrCat("cannot listen on 127.0.0.1:", port, ": ", "Address already in use"));
  close(fd);
}

TEST(ListenProbe, ReuseportListenerIsInUseToo) {
  // Another Postern node's workers listen with SO_REUSEPORT; the probe must
  // not join them.
  uint16_t port = 0;
  int fd = Listen(true, &port);
  absl::Status st = ProbeListenAddress(absl::StrCat("127.0.0.1:", port));
  EXPECT_FALSE(st.ok());
  EXPECT_NE(std::string(st.message()).find("Address already in use"), std::string::npos) << st;
  close(fd);
}

TEST(ListenProbe, GraceWaitsForAListenerThatCloses) {
  uint16_t port = 0;
  int fd = Listen(true, &port);
  const std::string address = absl::StrCat("127.0.0.1:", port);
  std::thread closer([fd] {
    absl::SleepFor(absl::Milliseconds(300));
    close(fd);
  });
  const absl::Time start = absl::Now();
  absl::Status st = ProbeListenAddress(address, absl::Seconds(5));
  closer.join();
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));
}

TEST(ListenProbe, GraceEndsWithTheError) {
  uint16_t port = 0;
  int fd = Listen(false, &port);
  const absl::Time start = absl::Now();
  absl::Status st = ProbeListenAddress(absl::StrCat("127.0.0.1:", port), absl::Milliseconds(200));
  EXPECT_FALSE(st.ok());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(200));
  close(fd);
}

TEST(ListenProbe, WildcardListenerBlocksLoopback) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(fd, 8), 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  absl::Status st = ProbeListenAddress(absl::StrCat("127.0.0.1:", ntohs(addr.sin_port)));
  EXPECT_FALSE(st.ok());
  close(fd);
}

TEST(ListenProbe, AddressNotOnThisHost) {
  // 192.0.2.1 (TEST-NET-1) is assigned to no interface here.
  absl::Status st = ProbeListenAddress("192.0.2.1:2525");
  EXPECT_FALSE(st.ok());
  EXPECT_NE(std::string(st.message()).find("cannot listen on 192.0.2.1:2525: "), std::string::npos)
      << st;
}

TEST(ListenProbe, Ipv6AndBadText) {
  // [::1] may be missing in a container: either answer is fine, but it parses.
  absl::Status v6 = ProbeListenAddress("[::1]:1");
  EXPECT_NE(v6.code(), absl::StatusCode::kInvalidArgument) << v6;
  EXPECT_EQ(ProbeListenAddress("localhost:25").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ProbeListenAddress("127.0.0.1").code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace postern::control
