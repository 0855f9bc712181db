// InboundConnection over a socketpair with a fake host: the test is the
// SMTP client (plaintext, or TLS run in memory) and pumps the ring itself.
#include "engine/inbound/inbound_connection.h"

#include <memory>
#include <string>
#include <vector>

#include "common/metric_region.h"
#include "common/metric_table.h"
#include "engine/inbound/inbound_policy_set.h"
#include "engine/inbound/inbound_probe.h"
#include "engine/net/ring_test_support.h"
#include "engine/tls/tls_test_support.h"
#include "gtest/gtest.h"
#include "proto/config.pb.h"

namespace postern::engine {
namespace {

using ring_test::Peer;
using ring_test::RingPump;

class FakeHost : public InboundHost {
 public:
  int64_t NowMs() const override { return 0; }
  bool Admit(InboundConnection* conn) override {
    admitted.push_back(conn->client_ip());
    return admit;
  }
  std::string NextQueueId() override { return "Q" + std::to_string(++ids); }
  void Spool(InboundConnection* conn, const std::string& queue_id, AcceptedMessage msg) override {
    spooled.push_back(std::move(msg));
    spool_ids.push_back(queue_id);
  }
  void CheckAuth(InboundConnection*, AuthRequest) override { ++auth_checks; }
  void ConnectionClosing(InboundConnection*) override { ++closing; }

  bool admit = true;
  std::vector<std::string> admitted;  // client addresses Admit was asked about
  int ids = 0;
  std::vector<AcceptedMessage> spooled;
  std::vector<std::string> spool_ids;
  int auth_checks = 0;
  int closing = 0;
};

config::v1::Config TestConfig() {
  config::v1::Config c;
  c.mutable_node()->set_hostname("mx.test");
  config::v1::Listener* l = c.add_listeners();
  l->set_name("mx");
  l->set_address("127.0.0.1:0");
  l->set_tls(config::v1::LISTENER_TLS_OFFER);
  config::v1::Certificate* cert = c.mutable_tls()->add_certificates();
  cert->set_name("mx");
  cert->set_cert_file(tls_test::Leaf().cert_file);
  cert->set_key_file(tls_test::Leaf().key_file);
  c.mutable_relay()->add_accepted_domains("example.com");
  c.mutable_relay()->add_trusted_networks("127.0.0.0/8");
  c.mutable_limits()->set_max_message_size(1 << 20);
  c.mutable_limits()->set_max_recipients(100);
  return c;
}

// One plaintext listener behind load balancers in 10.1.0.0/16; the forged
// client network of issue 14 (10.9.9.0/24) is trusted.
config::v1::Config ProxyConfig() {
  config::v1::Config c = TestConfig();
  config::v1::Listener* l = c.mutable_listeners(0);
  l->set_tls(config::v1::LISTENER_TLS_NONE);
  l->set_proxy_protocol(true);
  l->add_proxy_protocol_from("10.1.0.0/16");
  c.mutable_relay()->clear_trusted_networks();
  c.mutable_relay()->add_trusted_networks("10.9.9.0/24");
  return c;
}

class InboundConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override { Build(TestConfig(), "127.0.0.1"); }

  // The connection under test: a listener of `config`, TCP peer `socket_ip`.
  void Build(const config::v1::Config& config, const std::string& socket_ip) {
    auto region = metrics::MetricRegion::Create();
    ASSERT_TRUE(region.ok()) << region.status();
    metrics_ = std::move(*region);
    probe_ = std::make_unique<InboundProbe>(metrics_.get());
    auto policy = InboundPolicySet::FromConfig(config, "");
    ASSERT_TRUE(policy.ok()) << policy.status();
    auto pair = ring_test::MakeSocketPair();
    ConnectionSetup setup;
    setup.id = 1;
    setup.socket_ip = socket_ip;
    setup.socket_port = 40000;
    conn_ = std::make_unique<InboundConnection>(&host_, probe_.get(), pump_.ring(), pair.fds[0],
                                                setup, *policy, 0);
    peer_ = std::make_unique<Peer>(&pump_, pair.fds[1]);
  }

  void TearDown() override {
    conn_->Shutdown();
    EXPECT_TRUE(pump_.RunUntil([&] { return conn_->Finished(); }));
    EXPECT_EQ(host_.closing, 1) << "ConnectionClosing exactly once";
  }

  RingPump pump_;
  FakeHost host_;
  std::unique_ptr<metrics::MetricRegion> metrics_;
  std::unique_ptr<InboundProbe> probe_;
  std::unique_ptr<InboundConnection> conn_;
  std::unique_ptr<Peer> peer_;
};

// The bug this layer fixed: commands pipelined in one write followed by a
// shutdown of the client's sending half got only the greeting.
TEST_F(InboundConnectionTest, AHalfClosingPeerGetsEveryReply) {
  conn_->Start();
  peer_->Send("EHLO client.test\r\nMAIL FROM:<a@b.test>\r\nQUIT\r\n");
  peer_->ShutdownWrite();
  ASSERT_TRUE(peer_->WaitEof());
  const std::string got = peer_->received();
  EXPECT_NE(got.find("220 "), std::string::npos) << got;
  EXPECT_NE(got.find("250-mx.test"), std::string::npos) << got;
  EXPECT_NE(got.find("250 2.1.0"), std::string::npos) << got;
  EXPECT_NE(got.find("221 2.0.0"), std::string::npos) << got;
  EXPECT_TRUE(conn_->closing());
}

// After end of input the connection still owes the message's answer: it
// waits for the spool, answers, then closes.
TEST_F(InboundConnectionTest, AHalfClosingPeerIsAnsweredAfterTheSpool) {
  conn_->Start();
  peer_->Send("EHLO client.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n");
  ASSERT_TRUE(peer_->ReadUntil("354 "));
  peer_->Send("Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n");
  peer_->ShutdownWrite();
  ASSERT_TRUE(pump_.RunUntil([&] { return host_.spooled.size() == 1; }));
  pump_.RunFor(20);
  EXPECT_FALSE(conn_->closing()) << "closed before the message was answered";
  EXPECT_TRUE(conn_->waiting_for_spool());
  conn_->SpoolDone(absl::OkStatus(), host_.spool_ids[0]);
  ASSERT_TRUE(peer_->WaitEof());
  EXPECT_NE(peer_->received().find("250 2.0.0 Ok: queued as Q1"), std::string::npos);
  EXPECT_NE(peer_->received().find("221 2.0.0"), std::string::npos);
  EXPECT_EQ(host_.spooled[0].recipients, std::vector<std::string>{"c@example.com"});
}

TEST_F(InboundConnectionTest, StartTlsUpgradesAndTheSessionContinuesInsideTls) {
  auto client_ctx = tls_test::MakeClient();
  conn_->Start();
  peer_->Send("EHLO client.test\r\n");
  ASSERT_TRUE(peer_->ReadUntil("250 "));
  EXPECT_NE(peer_->Take().find("STARTTLS"), std::string::npos);
  peer_->Send("STARTTLS\r\n");
  ASSERT_TRUE(peer_->ReadUntil("220 2.0.0"));
  peer_->Take();
  peer_->StartTlsClient(client_ctx.get(), "mx.partner.example");
  ASSERT_TRUE(peer_->Handshake());
  peer_->Send("EHLO client.test\r\n");
  ASSERT_TRUE(peer_->ReadUntil("250 "));
  const std::string ehlo = peer_->Take();
  EXPECT_EQ(ehlo.find("STARTTLS"), std::string::npos) << "offered again inside TLS: " << ehlo;
  peer_->Send("MAIL FROM:<a@b.test>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n");
  ASSERT_TRUE(peer_->ReadUntil("354 "));
  peer_->Send("Subject: tls\r\n\r\nx\r\n.\r\n");
  ASSERT_TRUE(pump_.RunUntil([&] { return host_.spooled.size() == 1; }));
  // The Received header records the TLS the message came over.
  EXPECT_NE(host_.spooled[0].body.find("TLSv1.3"), std::string::npos) << host_.spooled[0].body;
  const uint64_t ok = metrics_->Get(
      metrics::kTlsHandshakes, metrics::ListenerTlsIndex(0, peer_->tls()->version(), "strong", ""));
  EXPECT_EQ(ok, 1u);
}

TEST_F(InboundConnectionTest, APeerThatClosesMidMessageLeavesNothingOwed) {
  conn_->Start();
  peer_->Send("EHLO client.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n");
  ASSERT_TRUE(peer_->ReadUntil("354 "));
  peer_->Send("Subject: cut\r\n\r\nhalf a bo");
  peer_->Close();
  ASSERT_TRUE(pump_.RunUntil([&] { return conn_->closing(); }));
  EXPECT_TRUE(host_.spooled.empty()) << "an unfinished message was spooled";
  EXPECT_TRUE(pump_.RunUntil([&] { return conn_->Finished(); }));
}

// The peer leaves while its message is being written: the connection keeps
// its promise to the spool (the answer comes, whoever listens), then closes.
TEST_F(InboundConnectionTest, ThePeerLeavingDuringTheSpoolWriteClosesAfterTheAnswer) {
  conn_->Start();
  peer_->Send("EHLO client.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n");
  ASSERT_TRUE(peer_->ReadUntil("354 "));
  peer_->Send("Subject: x\r\n\r\nx\r\n.\r\n");
  ASSERT_TRUE(pump_.RunUntil([&] { return host_.spooled.size() == 1; }));
  peer_->Close();
  pump_.RunFor(20);
  EXPECT_FALSE(conn_->closing());
  conn_->SpoolDone(absl::OkStatus(), host_.spool_ids[0]);
  EXPECT_TRUE(pump_.RunUntil([&] { return conn_->closing(); }));
  EXPECT_TRUE(pump_.RunUntil([&] { return conn_->Finished(); }));
}

// Shutdown right after Start: the greeting's send and the receive are in
// flight; the 421 follows the greeting and the connection finishes only
// once every operation completed.
TEST_F(InboundConnectionTest, ShutdownWhileOperationsAreInFlight) {
  conn_->Start();
  conn_->Shutdown();
  EXPECT_FALSE(conn_->Finished());
  ASSERT_TRUE(peer_->WaitEof());
  EXPECT_NE(peer_->received().find("220 "), std::string::npos);
  EXPECT_NE(peer_->received().find("421 4.3.2"), std::string::npos) << peer_->received();
  EXPECT_TRUE(pump_.RunUntil([&] { return conn_->Finished(); }));
}

TEST_F(InboundConnectionTest, ARefusedClientGets421AndNoSession) {
  host_.admit = false;
  conn_->Start();
  ASSERT_TRUE(peer_->WaitEof());
  EXPECT_EQ(peer_->received(), "421 4.7.0 Too many connections\r\n");
}

class InboundProxyConnectionTest : public InboundConnectionTest {
 protected:
  // Each test builds its connection with the peer address it needs.
  void SetUp() override {}
};

// Issue 14's attack, sent by a load balancer: the header is believed.
TEST_F(InboundProxyConnectionTest, AHeaderFromAnAllowedPeerSetsTheClient) {
  Build(ProxyConfig(), "10.1.0.7");
  conn_->Start();
  peer_->Send(
      "PROXY TCP4 10.9.9.9 10.1.0.1 40000 25\r\n"
      "EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<victim@foreign.test>\r\n");
  ASSERT_TRUE(peer_->ReadUntil("250 2.1.5")) << peer_->received();
  EXPECT_EQ(peer_->received().find("220 "), 0u) << peer_->received();
  EXPECT_EQ(host_.admitted, std::vector<std::string>{"10.9.9.9"});
  EXPECT_EQ(conn_->client_ip(), "10.9.9.9");
  EXPECT_TRUE(conn_->admitted());
  EXPECT_EQ(metrics_->Get(metrics::kProxyRefused, 0), 0u);
}

// The same bytes straight from a client that went around the balancer: 421,
// and the forged header is never read, so no session and no relaying.
TEST_F(InboundProxyConnectionTest, APeerOutsideProxyProtocolFromIsRefusedUnread) {
  Build(ProxyConfig(), "192.0.2.50");
  conn_->Start();
  peer_->Send(
      "PROXY TCP4 10.9.9.9 10.1.0.1 40000 25\r\n"
      "EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<victim@foreign.test>\r\nDATA\r\n"
      "Subject: relayed\r\n\r\nx\r\n.\r\n");
  ASSERT_TRUE(peer_->WaitEof());
  EXPECT_EQ(peer_->received(),
            "421 4.7.1 Error: this listener only accepts connections from its load "
            "balancers\r\n");
  EXPECT_TRUE(host_.admitted.empty()) << "a session was admitted for " << host_.admitted[0];
  EXPECT_EQ(conn_->client_ip(), "192.0.2.50") << "the forged header was parsed";
  EXPECT_FALSE(conn_->admitted());
  EXPECT_TRUE(host_.spooled.empty());
  EXPECT_EQ(metrics_->Get(metrics::kProxyRefused, 0), 1u);
  EXPECT_EQ(metrics_->Get(metrics::kBytesReceived, 0), 0u) << "the peer's bytes were read";
}

// A proxy listener whose list is empty (a config that skipped validation)
// trusts no peer: fail closed.
TEST_F(InboundProxyConnectionTest, AnEmptyProxyProtocolFromRefusesEveryPeer) {
  config::v1::Config c = ProxyConfig();
  c.mutable_listeners(0)->clear_proxy_protocol_from();
  Build(c, "10.1.0.7");
  conn_->Start();
  ASSERT_TRUE(peer_->WaitEof());
  EXPECT_EQ(peer_->received().rfind("421 4.7.1 ", 0), 0u) << peer_->received();
  EXPECT_TRUE(host_.admitted.empty());
  EXPECT_EQ(metrics_->Get(metrics::kProxyRefused, 0), 1u);
}

}  // namespace
}  // namespace postern::engine
