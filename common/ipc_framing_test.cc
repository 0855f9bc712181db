#include "common/ipc_framing.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

namespace postern::ipc {
namespace {

TEST(FrameReader, YieldsFramesSplitAtEveryByte) {
  std::string stream;
  AppendFrame("hello", &stream);
  AppendFrame("", &stream);
  AppendFrame(std::string(70000, 'x'), &stream);
  FrameReader reader;
  std::vector<std::string> got;
  for (char c : stream) {
    reader.Append(std::string_view(&c, 1));
    while (true) {
      auto next = reader.Next();
      ASSERT_TRUE(next.ok());
      if (!next->has_value()) break;
      got.push_back(**next);
    }
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], "hello");
  EXPECT_EQ(got[1], "");
  EXPECT_EQ(got[2], std::string(70000, 'x'));
}

TEST(FrameReader, RefusesOversizedFrame) {
  FrameReader reader;
  reader.Append(std::string("\x7f\xff\xff\xff", 4));
  EXPECT_FALSE(reader.Next().ok());
}

TEST(WriteFrame, ArrivesThroughASocketpair) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  ASSERT_TRUE(WriteFrame(sv[0], "abc").ok());
  char buf[16];
  ssize_t n = read(sv[1], buf, sizeof buf);
  ASSERT_EQ(n, 7);
  FrameReader reader;
  reader.Append(std::string_view(buf, 7));
  auto next = reader.Next();
  ASSERT_TRUE(next.ok() && next->has_value());
  EXPECT_EQ(**next, "abc");
  close(sv[0]);
  close(sv[1]);
}

}  // namespace
}  // namespace postern::ipc
