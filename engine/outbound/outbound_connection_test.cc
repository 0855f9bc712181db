// OutboundConnection against a scripted SMTP server on a loopback socket
// (the connection makes its own socket, so the server end is accepted from a
// listener), with a fake host. The test is the server and pumps the ring.
#include "engine/outbound/outbound_connection.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/net/ring_test_support.h"
#include "engine/tls/tls_test_support.h"
#include "gtest/gtest.h"
#include "proto/queue.pb.h"

namespace postern::engine {

// The host's per-domain queue is opaque to connections; the fake needs none.
struct DestinationQueue {};

namespace {

using queue::AttemptResult;
using ring_test::Peer;
using ring_test::RingPump;

class FakeHost : public OutboundConnectionHost, public OutboundObserver {
 public:
  explicit FakeHost(IoRing* ring) : ring_(ring) {}
  IoRing* ring() override { return ring_; }
  int64_t NowMs() const override { return 0; }
  const OutboundOptions& options() const override { return options_; }
  OutboundObserver* observer() override { return this; }
  absl::StatusOr<TlsClientContext*> ClientContext(const DomainTlsPolicy&) override {
    if (!client_ctx_) client_ctx_ = tls_test::MakeClient();
    return client_ctx_.get();
  }
  int64_t HostDownUntil(const std::string&) const override { return 0; }
  void HostFailed(const std::string& key) override { failed_hosts.push_back(key); }
  void HostUp(const std::string&) override {}
  void JobFinished(OutboundJob job, std::vector<AttemptResult> r) override {
    results.push_back(std::move(r));
  }
  std::optional<OutboundJob> NextJob(DestinationQueue*) override { return std::nullopt; }
  void Requeue(DestinationQueue*, OutboundJob job) override { requeued.push_back(std::move(job)); }
  void StartConnection(DestinationQueue*, std::vector<HostAddress>, size_t index, bool plaintext,
                       AddressFailures, OutboundJob) override {
    ++retries;
  }
  void SetIdle(OutboundConnection*, bool idle) override { idle_now = idle; }
  void ConnectionClosing(OutboundConnection*) override { ++closing; }
  void AfterCompletion() override {}

  // OutboundObserver
  void MessageSent(const queue::DeliveryJob&, const std::string&, const std::string& tls,
                   const std::string& version, const std::string&, const std::string&,
                   const std::string&) override {
    sent_tls = tls;
    sent_version = version;
  }

  OutboundOptions options_;
  std::vector<std::vector<AttemptResult>> results;
  std::vector<OutboundJob> requeued;
  std::vector<std::string> failed_hosts;
  int retries = 0;
  bool idle_now = false;
  int closing = 0;
  std::string sent_tls, sent_version;

 private:
  IoRing* ring_;
  std::unique_ptr<TlsClientContext> client_ctx_;
};

OutboundJob MakeJob() {
  auto env = std::make_shared<queue::v1::Envelope>();
  env->set_queue_id("Q1");
  env->set_sender("a@b.test");
  env->add_recipients()->set_address("c@partner.example");
  OutboundJob job;
  job.job.queue_id = "Q1";
  job.job.domain = "partner.example";
  job.job.envelope = env;
  job.job.body = std::make_shared<const std::string>("Subject: t\r\n\r\nbody\r\n");
  job.job.recipients = {0};
  return job;
}

class OutboundConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const ring_test::LoopbackListener listener = ring_test::ListenOnLoopback();
    listen_fd_ = listener.fd;
    address_.host = "mx.partner.example";
    address_.ip = "127.0.0.1";
    address_.port = listener.port;
  }
  void TearDown() override {
    if (conn_) {
      conn_->Close();
      EXPECT_TRUE(pump_.RunUntil([&] { return conn_->Finished(); }));
      EXPECT_EQ(host_.closing, 1) << "ConnectionClosing exactly once";
    }
    close(listen_fd_);
  }

  void Start(DomainTlsPolicy policy) {
    conn_ = std::make_unique<OutboundConnection>(&host_, &queue_, "partner.example", policy,
                                                 std::vector<HostAddress>{address_}, 0, false,
                                                 AddressFailures{});
    conn_->Start(MakeJob());
    int fd = -1;
    ASSERT_TRUE(pump_.RunUntil([&] { return (fd = accept(listen_fd_, nullptr, nullptr)) >= 0; }));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    server_ = std::make_unique<Peer>(&pump_, fd);
  }

  // Reads one command from the client, or fails the test.
  void Expect(std::string_view command) {
    ASSERT_TRUE(server_->ReadUntil("\r\n")) << "waiting for " << command;
    const std::string got = server_->Take();
    EXPECT_EQ(got.substr(0, command.size()), command) << got;
  }

  RingPump pump_;
  FakeHost host_{pump_.ring()};
  DestinationQueue queue_;
  HostAddress address_;
  int listen_fd_ = -1;
  std::unique_ptr<OutboundConnection> conn_;
  std::unique_ptr<Peer> server_;
};

TEST_F(OutboundConnectionTest, StartTlsUpgradeThenDelivery) {
  auto server_ctx = tls_test::MakeServer(tls_test::Leaf());
  DomainTlsPolicy policy;
  policy.mode = config::v1::OUTBOUND_TLS_MODE_REQUIRE;
  Start(policy);
  server_->Send("220 mx.partner.example ESMTP\r\n");
  Expect("EHLO");
  server_->Send("250-mx.partner.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
  Expect("STARTTLS");
  server_->Send("220 2.0.0 go ahead\r\n");
  server_->StartTlsServer(server_ctx.get());
  ASSERT_TRUE(server_->Handshake());
  Expect("EHLO");
  server_->Send("250-mx.partner.example\r\n250 PIPELINING\r\n");
  ASSERT_TRUE(server_->ReadUntil("DATA\r\n"));
  const std::string envelope = server_->Take();
  EXPECT_NE(envelope.find("MAIL FROM:<a@b.test>"), std::string::npos) << envelope;
  EXPECT_NE(envelope.find("RCPT TO:<c@partner.example>"), std::string::npos) << envelope;
  server_->Send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n");
  ASSERT_TRUE(server_->ReadUntil("\r\n.\r\n"));
  EXPECT_NE(server_->Take().find("body"), std::string::npos);
  server_->Send("250 2.0.0 queued\r\n");
  ASSERT_TRUE(pump_.RunUntil([&] { return host_.results.size() == 1; }));
  ASSERT_EQ(host_.results[0].size(), 1u);
  EXPECT_EQ(host_.results[0][0].kind, AttemptResult::kDelivered);
  EXPECT_EQ(host_.sent_tls, "tls_unverified");
  EXPECT_EQ(host_.sent_version, "TLSv1.3");
  // Nothing else waits: the connection idles for the next job.
  EXPECT_TRUE(pump_.RunUntil([&] { return host_.idle_now; }));
}

TEST_F(OutboundConnectionTest, EnforcedTlsWithoutStartTlsDefersAndSendsNoMail) {
  DomainTlsPolicy policy;
  policy.mode = config::v1::OUTBOUND_TLS_MODE_REQUIRE;
  Start(policy);
  server_->Send("220 mx ESMTP\r\n");
  Expect("EHLO");
  server_->Send("250-mx\r\n250 PIPELINING\r\n");
  ASSERT_TRUE(pump_.RunUntil([&] { return host_.results.size() == 1; }));
  EXPECT_EQ(host_.results[0][0].kind, AttemptResult::kTemporary);
  EXPECT_EQ(host_.results[0][0].reason, queue::v1::DEFER_REASON_TLS_REQUIRED);
  pump_.RunFor(10);
  EXPECT_EQ(server_->received().find("MAIL"), std::string::npos) << server_->received();
}

// The server goes away in the middle of the transaction: the job is
// settled as a temporary failure, never lost, and the connection finishes.
TEST_F(OutboundConnectionTest, AServerThatClosesMidTransactionDefersTheJob) {
  DomainTlsPolicy policy;
  policy.mode = config::v1::OUTBOUND_TLS_MODE_NONE;
  Start(policy);
  server_->Send("220 mx ESMTP\r\n");
  Expect("EHLO");
  server_->Send("250-mx\r\n250 PIPELINING\r\n");
  ASSERT_TRUE(server_->ReadUntil("DATA\r\n"));
  server_->Close();
  ASSERT_TRUE(pump_.RunUntil([&] { return host_.results.size() == 1; }));
  EXPECT_EQ(host_.results[0][0].kind, AttemptResult::kTemporary);
  EXPECT_TRUE(pump_.RunUntil([&] { return conn_->Finished(); }));
  EXPECT_EQ(host_.closing, 1);
  conn_.reset();
}

// Close() while the connection waits for the greeting (receive in flight):
// the job it holds goes back to its destination, and the connection
// finishes only after its operations completed.
TEST_F(OutboundConnectionTest, CloseWhileOperationsAreInFlightRequeuesTheJob) {
  DomainTlsPolicy policy;
  Start(policy);
  conn_->Close();
  EXPECT_EQ(host_.requeued.size(), 1u);
  EXPECT_TRUE(host_.results.empty());
  EXPECT_TRUE(pump_.RunUntil([&] { return conn_->Finished(); }));
  EXPECT_TRUE(server_->WaitEof());
}

TEST_F(OutboundConnectionTest, OpportunisticFallsBackToPlaintextAfterAFailedHandshake) {
  DomainTlsPolicy policy;
  policy.mode = config::v1::OUTBOUND_TLS_MODE_OPPORTUNISTIC;
  Start(policy);
  server_->Send("220 mx ESMTP\r\n");
  Expect("EHLO");
  server_->Send("250-mx\r\n250 STARTTLS\r\n");
  Expect("STARTTLS");
  server_->Send("220 go\r\n");
  server_->Send("this is not TLS\r\n");
  // The same address again, in plaintext, on a new connection.
  ASSERT_TRUE(pump_.RunUntil([&] { return host_.retries == 1; }));
  EXPECT_TRUE(host_.results.empty());
}

}  // namespace
}  // namespace postern::engine
