#include "engine/net/ring_sender.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/net/io_ring.h"
#include "gtest/gtest.h"

namespace postern::engine {
namespace {

// Records the send op's completions and passes them to the sender, as a
// connection does.
class SendOp : public IoOp {
 public:
  void OnComplete(int res, uint32_t flags) override {
    results.push_back(res);
    resent = sender->OnSent(fd, res, resend);
  }
  RingSender* sender = nullptr;
  int fd = -1;
  bool resend = true;  // false: the owner is closing
  std::vector<int> results;
  bool resent = false;
};

class RingSenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::signal(SIGPIPE, SIG_IGN);  // ErrorEndsTheSend writes to a closed peer
    absl::Status st = ring_.Init(64, 4, 4096);
    if (!st.ok()) GTEST_SKIP() << "no io_uring here: " << st;
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds_), 0);
    // Non-blocking with a small buffer: a large send comes back short.
    ASSERT_EQ(fcntl(fds_[0], F_SETFL, O_NONBLOCK), 0);
    ASSERT_EQ(fcntl(fds_[1], F_SETFL, O_NONBLOCK), 0);
    int size = 4096;
    setsockopt(fds_[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    op_.sender = &sender_;
    op_.fd = fds_[0];
  }
  void TearDown() override {
    if (fds_[0] >= 0) close(fds_[0]);
    if (fds_[1] >= 0) close(fds_[1]);
  }

  // Everything the peer can read now.
  void Drain() {
    char buf[65536];
    ssize_t n;
    while ((n = read(fds_[1], buf, sizeof buf)) > 0) received_.append(buf, static_cast<size_t>(n));
  }

  // Runs the ring, reading on the peer's side, until the sender is idle.
  void RunUntilIdle() {
    for (int i = 0; i < 100000 && !sender_.idle(); ++i) {
      Drain();
      ASSERT_TRUE(ring_.RunOnce().ok());
      if (!op_.resent) sender_.Send(fds_[0]);  // what queued meanwhile
    }
    Drain();
    ASSERT_TRUE(sender_.idle());
  }

  IoRing ring_;
  SendOp op_;
  RingSender sender_{&ring_, &op_};
  int fds_[2] = {-1, -1};
  std::string received_;
};

TEST_F(RingSenderTest, NothingPendingSendsNothing) {
  EXPECT_TRUE(sender_.idle());
  EXPECT_FALSE(sender_.Send(fds_[0]));
}

TEST_F(RingSenderTest, OneSendAtATimeBytesInOrder) {
  sender_.pending()->append("first ");
  ASSERT_TRUE(sender_.Send(fds_[0]));
  EXPECT_FALSE(sender_.idle());
  // Queued while the first send is in flight: waits for the next one.
  sender_.pending()->append("second");
  EXPECT_FALSE(sender_.Send(fds_[0]));
  RunUntilIdle();
  EXPECT_EQ(received_, "first second");
  EXPECT_EQ(op_.results.size(), 2u);
}

TEST_F(RingSenderTest, ShortSendIsFinishedFirst) {
  std::string big;
  for (int i = 0; big.size() < (1 << 20); ++i) big += std::to_string(i) + ",";
  sender_.pending()->append(big);
  ASSERT_TRUE(sender_.Send(fds_[0]));
  sender_.pending()->append("tail");
  RunUntilIdle();
  EXPECT_EQ(received_, big + "tail");
  // The socket buffer is far smaller than the body: at least one send was short.
  ASSERT_FALSE(op_.results.empty());
  EXPECT_LT(op_.results.front(), static_cast<int>(big.size()));
}

TEST_F(RingSenderTest, ErrorEndsTheSend) {
  close(fds_[1]);
  fds_[1] = -1;
  sender_.pending()->append("lost");
  ASSERT_TRUE(sender_.Send(fds_[0]));
  ASSERT_TRUE(ring_.RunOnce().ok());
  ASSERT_EQ(op_.results.size(), 1u);
  EXPECT_EQ(op_.results[0], -EPIPE);
  EXPECT_FALSE(op_.resent);
  EXPECT_TRUE(sender_.idle());
}

TEST_F(RingSenderTest, NoResendWhenTheOwnerIsClosing) {
  op_.resend = false;
  const std::string big(1 << 20, 'x');
  sender_.pending()->append(big);
  ASSERT_TRUE(sender_.Send(fds_[0]));
  ASSERT_TRUE(ring_.RunOnce().ok());
  ASSERT_EQ(op_.results.size(), 1u);
  ASSERT_GT(op_.results[0], 0);
  ASSERT_LT(op_.results[0], static_cast<int>(big.size()));  // short
  EXPECT_FALSE(op_.resent);
  EXPECT_TRUE(sender_.idle());  // the rest is dropped
  Drain();
  EXPECT_EQ(received_.size(), static_cast<size_t>(op_.results[0]));
}

}  // namespace
}  // namespace postern::engine
