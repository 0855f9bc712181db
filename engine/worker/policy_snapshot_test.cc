#include "engine/worker/policy_snapshot.h"

#include <memory>

#include "gtest/gtest.h"
#include "proto/config.pb.h"

namespace postern::engine {
namespace {

config::v1::Config BaseConfig() {
  config::v1::Config c;
  c.mutable_node()->set_hostname("mx.test");
  config::v1::Listener* l = c.add_listeners();
  l->set_name("mx");
  l->set_address("127.0.0.1:0");
  l->set_tls(config::v1::LISTENER_TLS_NONE);
  c.mutable_relay()->add_accepted_domains("example.com");
  c.mutable_relay()->add_trusted_networks("10.0.0.0/8");
  c.mutable_delivery()->set_smtp_port(2525);
  c.mutable_limits()->set_max_connections(7);
  return c;
}

TEST(PolicySnapshotTest, BuildsEveryPartFromOneVersion) {
  config::v1::Config c = BaseConfig();
  config::v1::Partner* p = c.add_partners();
  p->set_domain("bank.example");
  p->mutable_outbound()->set_tls(config::v1::OUTBOUND_TLS_MODE_VERIFY);
  p->mutable_inbound()->set_require_tls(true);
  config::v1::Route* r = c.add_routes();
  r->set_domain("example.com");
  r->set_next_hop("10.0.0.5:25");
  auto s = PolicySnapshot::Build(c, 42, "");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->version(), 42u);
  EXPECT_TRUE((*s)->inbound()->relay().IsTrusted("10.1.2.3"));
  EXPECT_FALSE((*s)->inbound()->relay().IsTrusted("192.0.2.1"));
  ASSERT_NE((*s)->inbound()->inbound().Match("bank.example"), nullptr);
  EXPECT_TRUE((*s)->inbound()->inbound().Match("bank.example")->require_tls);
  EXPECT_EQ((*s)->outbound_policy().For("bank.example").mode, config::v1::OUTBOUND_TLS_MODE_VERIFY);
  EXPECT_EQ((*s)->outbound_options().smtp_port, 2525);
  EXPECT_EQ((*s)->inbound_limits().max_connections, 7u);
  EXPECT_EQ((*s)->inbound()->listener(0).name, "mx");
  EXPECT_EQ((*s)->inbound()->tls(), nullptr) << "no listener uses TLS";
}

// A version that fails in its last part is refused whole: nothing of it is
// returned, so the worker keeps running the snapshot it has.
TEST(PolicySnapshotTest, AVersionBrokenAnywhereIsRefusedWhole) {
  config::v1::Config bad_route = BaseConfig();
  config::v1::Route* r = bad_route.add_routes();
  r->set_domain("example.com");
  r->set_next_hop("not a host:99999");
  EXPECT_FALSE(PolicySnapshot::Build(bad_route, 2, "").ok());

  config::v1::Config bad_pin = BaseConfig();
  config::v1::Partner* p = bad_pin.add_partners();
  p->set_domain("partner.example");
  p->mutable_inbound()->add_pins("sha256:nothex");
  EXPECT_FALSE(PolicySnapshot::Build(bad_pin, 3, "").ok());

  config::v1::Config missing_cert = BaseConfig();
  missing_cert.mutable_listeners(0)->set_tls(config::v1::LISTENER_TLS_OFFER);
  config::v1::Certificate* cert = missing_cert.mutable_tls()->add_certificates();
  cert->set_name("mx");
  cert->set_cert_file("/nonexistent/mx.crt");
  cert->set_key_file("/nonexistent/mx.key");
  EXPECT_FALSE(PolicySnapshot::Build(missing_cert, 4, "").ok());
}

// A session keeps the inbound set it started with after a newer version
// replaced the snapshot; the old set lives exactly as long as it is held.
TEST(PolicySnapshotTest, AnOldInboundSetLivesAsLongAsASessionHoldsIt) {
  auto v1 = PolicySnapshot::Build(BaseConfig(), 1, "");
  ASSERT_TRUE(v1.ok());
  std::shared_ptr<const InboundPolicySet> held = (*v1)->inbound();
  std::weak_ptr<const InboundPolicySet> watch = held;
  config::v1::Config c2 = BaseConfig();
  c2.mutable_relay()->clear_trusted_networks();
  auto v2 = PolicySnapshot::Build(c2, 2, "");
  ASSERT_TRUE(v2.ok());
  v1->reset();  // the worker installed v2
  ASSERT_FALSE(watch.expired());
  EXPECT_TRUE(held->relay().IsTrusted("10.1.2.3")) << "the session's rules changed under it";
  EXPECT_FALSE((*v2)->inbound()->relay().IsTrusted("10.1.2.3"));
  held.reset();  // the session ended
  EXPECT_TRUE(watch.expired());
}

}  // namespace
}  // namespace postern::engine
