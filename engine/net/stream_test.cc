#include "engine/net/stream.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "engine/net/ring_test_support.h"
#include "engine/tls/tls_session.h"
#include "engine/tls/tls_test_support.h"
#include "gtest/gtest.h"

namespace postern::engine {
namespace {

using ring_test::Peer;
using ring_test::RingPump;

// Records every callback; replies through hooks the test sets.
class RecordingHandler : public StreamHandler {
 public:
  void OnStreamData(std::string_view data) override {
    EXPECT_FALSE(closing) << "data after close";
    data_.append(data);
    if (on_data) on_data(data);
  }
  void OnStreamEnd(StreamEnd how, std::string_view detail) override {
    ++ends;
    end = how;
    end_detail = std::string(detail);
    if (on_end) on_end();
  }
  void OnTlsEstablished() override { ++established; }
  void OnTlsFailed(std::string_view reason) override { tls_failure = std::string(reason); }
  void OnConnected(int res) override {
    connected = true;
    connect_result = res;
  }
  void OnSendFailed(int err) override { send_error = err; }
  void OnWireBytes(size_t n) override { wire_bytes += n; }
  void OnStreamClosing() override {
    EXPECT_FALSE(closing) << "OnStreamClosing twice";
    closing = true;
  }

  std::string data_;
  std::function<void(std::string_view)> on_data;
  std::function<void()> on_end;
  int ends = 0;
  StreamEnd end = StreamEnd::kEof;
  std::string end_detail;
  int established = 0;
  std::string tls_failure;
  bool connected = false;
  int connect_result = 1;
  int send_error = 0;
  size_t wire_bytes = 0;
  bool closing = false;
};

class StreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pair = ring_test::MakeSocketPair();
    stream_ = std::make_unique<Stream>(pump_.ring(), &handler_, pair.fds[0]);
    peer_ = std::make_unique<Peer>(&pump_, pair.fds[1]);
  }
  void TearDown() override {
    stream_->Close();
    EXPECT_TRUE(pump_.RunUntil([&] { return stream_->Finished(); }));
  }

  RingPump pump_;
  RecordingHandler handler_;
  std::unique_ptr<Stream> stream_;
  std::unique_ptr<Peer> peer_;
};

TEST_F(StreamTest, MovesBytesBothWays) {
  stream_->StartReading();
  peer_->Send("HELO x\r\n");
  ASSERT_TRUE(pump_.RunUntil([&] { return handler_.data_ == "HELO x\r\n"; }));
  EXPECT_EQ(handler_.wire_bytes, 8u);
  stream_->out()->append("250 ok\r\n");
  stream_->Flush();
  ASSERT_TRUE(peer_->ReadUntil("250 ok\r\n"));
}

// A peer that shuts down its sending half still gets what is sent after:
// end of input is reported, the stream stays open for replies.
TEST_F(StreamTest, EndOfInputLeavesTheSendingSideOpen) {
  stream_->StartReading();
  handler_.on_end = [&] {
    stream_->out()->append("221 bye\r\n");
    stream_->CloseAfterFlush();
  };
  peer_->Send("QUIT\r\n");
  peer_->ShutdownWrite();
  ASSERT_TRUE(peer_->ReadUntil("221 bye\r\n"));
  EXPECT_EQ(handler_.data_, "QUIT\r\n");
  EXPECT_EQ(handler_.ends, 1);
  EXPECT_EQ(handler_.end, StreamEnd::kEof);
  EXPECT_TRUE(peer_->WaitEof());
  EXPECT_TRUE(handler_.closing);
  EXPECT_TRUE(pump_.RunUntil([&] { return stream_->Finished(); }));
}

// Close() with a receive armed and a large send in flight: the stream is
// finished only once every operation completed, and says closing once.
TEST_F(StreamTest, CloseWhileOperationsAreInFlight) {
  stream_->StartReading();
  stream_->out()->assign(4 << 20, 'x');  // more than the socket buffers hold
  stream_->Flush();
  pump_.RunFor(5);
  EXPECT_FALSE(stream_->Finished());
  stream_->Close();
  EXPECT_TRUE(handler_.closing);
  EXPECT_TRUE(pump_.RunUntil([&] { return stream_->Finished(); }));
  // Nothing more is read after Close().
  peer_->Send("late\r\n");
  pump_.RunFor(10);
  EXPECT_EQ(handler_.data_, "");
}

TEST_F(StreamTest, APeerThatClosesMidSendFailsTheSend) {
  stream_->StartReading();
  stream_->out()->assign(4 << 20, 'x');
  stream_->Flush();
  pump_.RunFor(5);
  peer_->Close();
  ASSERT_TRUE(pump_.RunUntil([&] { return handler_.closing; }));
  EXPECT_TRUE(handler_.send_error < 0 || handler_.ends == 1);
  EXPECT_TRUE(pump_.RunUntil([&] { return stream_->Finished(); }));
}

TEST_F(StreamTest, ServerTlsAfterPlaintextAndPlaintextHeldDuringTheHandshake) {
  auto server_ctx = tls_test::MakeServer(tls_test::Leaf());
  auto client_ctx = tls_test::MakeClient();
  stream_->StartReading();
  stream_->out()->append("220 go ahead\r\n");
  stream_->Flush();
  stream_->StartTlsServer(server_ctx.get());
  ASSERT_TRUE(peer_->ReadUntil("220 go ahead\r\n"));
  peer_->Take();
  // Written before the handshake: must not reach the wire in plaintext.
  stream_->out()->append("250 secret\r\n");
  stream_->Flush();
  peer_->StartTlsClient(client_ctx.get(), "mx.partner.example");
  ASSERT_TRUE(peer_->Handshake());
  ASSERT_TRUE(pump_.RunUntil([&] { return handler_.established == 1; }));
  EXPECT_TRUE(stream_->tls_on());
  stream_->Flush();
  ASSERT_TRUE(peer_->ReadUntil("250 secret\r\n"));
  peer_->Send("EHLO inside\r\n");
  ASSERT_TRUE(pump_.RunUntil([&] { return handler_.data_ == "EHLO inside\r\n"; }));
  // close_notify from the peer ends the input.
  peer_->tls()->Shutdown();
  peer_->Send("");
  ASSERT_TRUE(pump_.RunUntil([&] { return handler_.ends == 1; }));
  EXPECT_EQ(handler_.end, StreamEnd::kTlsClosed);
}

TEST_F(StreamTest, AFailedHandshakeIsReportedAndCloses) {
  auto server_ctx = tls_test::MakeServer(tls_test::Leaf());
  stream_->StartReading();
  stream_->StartTlsServer(server_ctx.get());
  peer_->Send("GET / HTTP/1.0\r\n\r\n");  // not a ClientHello
  ASSERT_TRUE(pump_.RunUntil([&] { return !handler_.tls_failure.empty(); }));
  EXPECT_TRUE(pump_.RunUntil([&] { return handler_.closing; }));
  EXPECT_TRUE(peer_->WaitEof());
  EXPECT_EQ(handler_.established, 0);
}

TEST_F(StreamTest, EofDuringTheHandshakeIsAFailureNotAnEnd) {
  auto server_ctx = tls_test::MakeServer(tls_test::Leaf());
  stream_->StartReading();
  stream_->StartTlsServer(server_ctx.get());
  peer_->ShutdownWrite();
  ASSERT_TRUE(pump_.RunUntil([&] { return !handler_.tls_failure.empty(); }));
  EXPECT_EQ(handler_.tls_failure, kTlsEofReason);
  EXPECT_EQ(handler_.ends, 0);
}

TEST(StreamConnectTest, ConnectsAndReportsRefusal) {
  RingPump pump;
  const ring_test::LoopbackListener listener = ring_test::ListenOnLoopback();
  const int lfd = listener.fd;
  const std::string target = "127.0.0.1:" + std::to_string(listener.port);
  auto addr = ParseSocketAddress(target);
  ASSERT_TRUE(addr.ok());

  RecordingHandler ok_handler;
  Stream ok(pump.ring(), &ok_handler);
  ASSERT_TRUE(ok.Connect(*addr).ok());
  ASSERT_TRUE(pump.RunUntil([&] { return ok_handler.connected; }));
  EXPECT_EQ(ok_handler.connect_result, 0);
  EXPECT_TRUE(ok.connected());
  int accepted = -1;
  ASSERT_TRUE(pump.RunUntil([&] { return (accepted = accept(lfd, nullptr, nullptr)) >= 0; }));
  ASSERT_EQ(send(accepted, "220 hi\r\n", 8, 0), 8);
  ASSERT_TRUE(pump.RunUntil([&] { return ok_handler.data_ == "220 hi\r\n"; }));
  ok.Close();
  ASSERT_TRUE(pump.RunUntil([&] { return ok.Finished(); }));
  close(accepted);

  close(lfd);  // nothing listens there any more
  RecordingHandler refused_handler;
  Stream refused(pump.ring(), &refused_handler);
  ASSERT_TRUE(refused.Connect(*addr).ok());
  ASSERT_TRUE(pump.RunUntil([&] { return refused_handler.connected; }));
  EXPECT_EQ(refused_handler.connect_result, -ECONNREFUSED);
  refused.Close();
  ASSERT_TRUE(pump.RunUntil([&] { return refused.Finished(); }));
}

}  // namespace
}  // namespace postern::engine
