#include "control/config_defaults.h"

#include <unistd.h>

#include <climits>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "control/config_loader.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace postern::control {
namespace {

namespace v1 = ::postern::config::v1;
using ::postern::config::v1::Config;
using ::testing::StartsWith;

std::string HostName() {
  char buf[HOST_NAME_MAX + 1] = {};
  EXPECT_EQ(gethostname(buf, sizeof(buf) - 1), 0);
  return buf;
}

TEST(ConfigDefaultsTest, EmbeddedDefaultsMatchSpec) {
  absl::StatusOr<Config> loaded = ParseConfigYaml(DefaultConfigYaml(), "<embedded defaults>");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const Config& c = *loaded;
  EXPECT_TRUE(ValidateConfig(c).ok());

  EXPECT_EQ(c.node().data_dir(), "./var/postern");
  EXPECT_EQ(c.node().workers(), 0u);  // one per core
  EXPECT_EQ(c.node().name(), HostName());

  struct Want {
    const char* name;
    const char* address;
    v1::ListenerTls tls;
    v1::ListenerAuth auth;
  };
  const Want kWant[] = {
      {"mta", "127.0.0.1:2525", v1::LISTENER_TLS_OFFER, v1::LISTENER_AUTH_NONE},
      {"submission", "127.0.0.1:2587", v1::LISTENER_TLS_REQUIRE, v1::LISTENER_AUTH_AFTER_TLS},
      {"submissions", "127.0.0.1:2465", v1::LISTENER_TLS_IMPLICIT, v1::LISTENER_AUTH_AFTER_TLS},
  };
  ASSERT_EQ(c.listeners_size(), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(c.listeners(i).name(), kWant[i].name);
    EXPECT_EQ(c.listeners(i).address(), kWant[i].address);
    EXPECT_EQ(c.listeners(i).tls(), kWant[i].tls);
    EXPECT_EQ(c.listeners(i).auth(), kWant[i].auth);
    EXPECT_FALSE(c.listeners(i).proxy_protocol());
  }

  // Any domain from localhost, relayed by MX: no accepted_domains, no routes.
  EXPECT_EQ(c.relay().accepted_domains_size(), 0);
  ASSERT_EQ(c.relay().trusted_networks_size(), 1);
  EXPECT_EQ(c.relay().trusted_networks(0), "127.0.0.0/8");
  EXPECT_EQ(c.routes_size(), 0);
  EXPECT_EQ(c.tls().certificates_size(), 0);  // the generated default certificate

  EXPECT_EQ(c.control().admin_socket(), "./var/postern/admin.sock");
  EXPECT_EQ(c.control().metrics_listen(), "127.0.0.1:9464");
  EXPECT_EQ(c.control().grpc_listen(), "");
  EXPECT_EQ(c.cluster().primary(), "");
}

TEST(ConfigDefaultsTest, ApplyDefaultsFillsDocumentedValues) {
  Config c;
  ApplyDefaults(&c);
  EXPECT_EQ(c.node().name(), HostName());
  EXPECT_EQ(c.node().hostname(), HostName());
  EXPECT_EQ(c.node().data_dir(), "./var/postern");
  EXPECT_EQ(c.node().workers(), 0u);
  EXPECT_EQ(c.node().drain_timeout().seconds(), 30);

  EXPECT_EQ(c.tls().min_version(), v1::TLS_VERSION_1_2);
  EXPECT_EQ(c.tls().ciphers(), v1::CIPHER_CLASS_PFS);

  EXPECT_EQ(c.delivery().smtp_port(), 25u);
  EXPECT_EQ(c.delivery().max_queue_lifetime().seconds(), 120 * 3600);
  EXPECT_EQ(c.delivery().tls_failure_max_defer().seconds(), 24 * 3600);
  ASSERT_EQ(c.delivery().retry_schedule_size(), 5);
  const int64_t kSchedule[] = {60, 300, 900, 1800, 3600};
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(c.delivery().retry_schedule(i).seconds(), kSchedule[i]) << i;
    EXPECT_EQ(c.delivery().retry_schedule(i).nanos(), 0) << i;
  }
  EXPECT_EQ(c.delivery().default_tls(), v1::OUTBOUND_TLS_MODE_OPPORTUNISTIC);
  EXPECT_FALSE(c.delivery().hold());

  EXPECT_EQ(c.limits().max_message_size(), 52428800u);
  EXPECT_EQ(c.limits().max_recipients(), 1000u);
  EXPECT_EQ(c.limits().max_connections_per_ip(), 100u);
  EXPECT_EQ(c.limits().command_timeout().seconds(), 300);
  EXPECT_EQ(c.limits().data_timeout().seconds(), 600);
  EXPECT_EQ(c.limits().max_connections(), 10000u);

  EXPECT_EQ(c.control().admin_socket(), "./var/postern/admin.sock");
  EXPECT_EQ(c.control().metrics_listen(), "127.0.0.1:9464");
  EXPECT_EQ(c.listeners_size(), 0);  // listeners are never invented
  EXPECT_TRUE(ValidateConfig(c).ok()) << ValidateConfig(c);
}

TEST(ConfigDefaultsTest, ApplyDefaultsKeepsWhatIsSet) {
  Config c;
  c.mutable_node()->set_name("n1");
  c.mutable_node()->set_data_dir("/srv/postern/");
  c.mutable_node()->mutable_drain_timeout()->set_seconds(5);
  c.add_listeners()->set_tls(v1::LISTENER_TLS_NONE);
  c.add_listeners();
  c.mutable_delivery()->add_retry_schedule()->set_seconds(10);
  c.mutable_delivery()->set_default_tls(v1::OUTBOUND_TLS_MODE_REQUIRE);
  c.mutable_tls()->set_min_version(v1::TLS_VERSION_1_3);
  c.mutable_limits()->set_max_recipients(7);
  c.add_partners()->set_domain("a.example");
  c.add_partners()->mutable_outbound()->set_tls(v1::OUTBOUND_TLS_MODE_NONE);
  ApplyDefaults(&c);

  EXPECT_EQ(c.node().name(), "n1");
  EXPECT_EQ(c.node().hostname(), "n1");
  EXPECT_EQ(c.node().drain_timeout().seconds(), 5);
  EXPECT_EQ(c.control().admin_socket(), "/srv/postern/admin.sock");
  EXPECT_EQ(c.listeners(0).tls(), v1::LISTENER_TLS_NONE);
  EXPECT_EQ(c.listeners(0).auth(), v1::LISTENER_AUTH_NONE);
  EXPECT_EQ(c.listeners(1).tls(), v1::LISTENER_TLS_OFFER);
  ASSERT_EQ(c.delivery().retry_schedule_size(), 1);
  EXPECT_EQ(c.delivery().retry_schedule(0).seconds(), 10);
  EXPECT_EQ(c.limits().max_recipients(), 7u);
  // A partner without an outbound policy is delivered to like everyone else.
  EXPECT_EQ(c.partners(0).outbound().tls(), v1::OUTBOUND_TLS_MODE_REQUIRE);
  EXPECT_EQ(c.partners(0).outbound().min_version(), v1::TLS_VERSION_1_3);
  EXPECT_EQ(c.partners(0).outbound().ciphers(), v1::CIPHER_CLASS_PFS);
  EXPECT_EQ(c.partners(1).outbound().tls(), v1::OUTBOUND_TLS_MODE_NONE);

  Config again = c;
  ApplyDefaults(&again);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(c, again));
}

TEST(ConfigDefaultsTest, AdminSocketUnderRootDataDir) {
  Config c;
  c.mutable_node()->set_data_dir("/");
  ApplyDefaults(&c);
  EXPECT_EQ(c.control().admin_socket(), "/admin.sock");
}

TEST(ConfigDefaultsTest, UndefaultedConfigFailsValidation) {
  // The contract: validate after ApplyDefaults. Without it required fields
  // are empty and reported.
  absl::Status s = ValidateConfig(Config());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), StartsWith("node.name: "));
}

// A config that passes, with one of everything, for the failure table below
// to break one field at a time.
Config ValidBase() {
  Config c;
  v1::Listener* l = c.add_listeners();
  l->set_name("mx");
  l->set_address("0.0.0.0:25");
  l = c.add_listeners();
  l->set_name("sub");
  l->set_address("[::1]:587");
  l->set_tls(v1::LISTENER_TLS_REQUIRE);
  l->set_auth(v1::LISTENER_AUTH_AFTER_TLS);
  v1::Certificate* cert = c.mutable_tls()->add_certificates();
  cert->set_name("mx");
  cert->set_cert_file("/c.pem");
  cert->set_key_file("/k.pem");
  c.mutable_relay()->add_accepted_domains("example.com");
  c.mutable_relay()->add_accepted_domains("localhost");
  c.mutable_relay()->add_trusted_networks("10.0.0.0/8");
  c.mutable_relay()->add_trusted_networks("2001:db8::/32");
  c.mutable_relay()->add_trusted_networks("192.0.2.7");
  c.mutable_relay()->add_trusted_networks("0.0.0.0/0");
  c.mutable_relay()->add_require_tls_domains("example.com");
  c.mutable_relay()->set_users_file("/etc/postern/users");
  c.mutable_relay()->set_sender_login_match(true);
  v1::Route* r = c.add_routes();
  r->set_domain("example.com");
  r->set_next_hop("mx.example.com:25");
  r = c.add_routes();
  r->set_domain("example.net");
  r->set_next_hop("[2001:db8::1]:2525");
  c.mutable_dns()->add_servers("127.0.0.1:53");
  v1::Partner* p = c.add_partners();
  p->set_domain(".partner.example");
  p->mutable_outbound()->set_tls(v1::OUTBOUND_TLS_MODE_PIN);
  p->mutable_outbound()->add_pins("sha256:" + std::string(64, 'a'));
  p->mutable_outbound()->add_match(".partner.example");
  p->mutable_inbound()->add_pins("sha256:" + std::string(64, 'F'));
  c.add_partners()->set_domain("partner.example");
  c.mutable_control()->set_grpc_listen("0.0.0.0:7443");
  c.mutable_cluster()->set_primary("node-a:7443");
  ApplyDefaults(&c);
  return c;
}

TEST(ConfigDefaultsTest, ValidBasePasses) {
  absl::Status s = ValidateConfig(ValidBase());
  EXPECT_TRUE(s.ok()) << s;
}

TEST(ConfigDefaultsTest, ValidationFailuresNameTheKey) {
  const struct {
    std::function<void(Config*)> breaks;
    const char* error_prefix;
  } kCases[] = {
      {[](Config* c) { c->mutable_node()->set_hostname("bad_host"); },
       "node.hostname: \"bad_host\" is not a host name"},
      {[](Config* c) { c->mutable_node()->set_data_dir(""); }, "node.data_dir: must not be empty"},
      {[](Config* c) { c->mutable_node()->set_workers(1025); }, "node.workers: 1025 is over"},
      {[](Config* c) { c->mutable_listeners(0)->set_name(""); }, "listeners[0].name: \"\" is not"},
      {[](Config* c) { c->mutable_listeners(0)->set_name("m x"); }, "listeners[0].name: \"m x\""},
      {[](Config* c) { c->mutable_listeners(1)->set_name("mx"); },
       "listeners[1].name: duplicate listener name \"mx\""},
      {[](Config* c) { c->mutable_listeners(0)->set_address("1.2.3.4"); },
       "listeners[0].address: \"1.2.3.4\" is not ip:port"},
      {[](Config* c) { c->mutable_listeners(0)->set_address("1.2.3.4:0"); },
       "listeners[0].address: "},
      {[](Config* c) { c->mutable_listeners(0)->set_address("1.2.3.4:65536"); },
       "listeners[0].address: "},
      {[](Config* c) { c->mutable_listeners(0)->set_address("1.2.3.4:+25"); },
       "listeners[0].address: "},
      {[](Config* c) { c->mutable_listeners(0)->set_address("::1:25"); }, "listeners[0].address: "},
      {[](Config* c) { c->mutable_listeners(0)->set_address("localhost:25"); },
       "listeners[0].address: "},
      {[](Config* c) { c->mutable_listeners(0)->set_address("[1.2.3.4]:25"); },
       "listeners[0].address: "},
      {[](Config* c) { c->mutable_listeners(0)->set_address(":25"); }, "listeners[0].address: "},
      {[](Config* c) { c->mutable_listeners(1)->set_address("0.0.0.0:25"); },
       "listeners[1].address: \"0.0.0.0:25\" is used by another listener"},
      {[](Config* c) { c->mutable_listeners(1)->set_tls(v1::LISTENER_TLS_NONE); },
       "listeners[1].auth: after_tls needs TLS"},
      // Only the load balancer may speak PROXY: its networks are required.
      {[](Config* c) { c->mutable_listeners(1)->set_proxy_protocol(true); },
       "listeners[1].proxy_protocol_from: required when proxy_protocol is true"},
      {[](Config* c) { c->mutable_listeners(0)->add_proxy_protocol_from("10.0.0.0/8"); },
       "listeners[0].proxy_protocol_from: only used with proxy_protocol: true"},
      {[](Config* c) {
         c->mutable_listeners(0)->set_proxy_protocol(true);
         c->mutable_listeners(0)->add_proxy_protocol_from("10.0.0.0/8");
         c->mutable_listeners(0)->add_proxy_protocol_from("lb.example");
       },
       "listeners[0].proxy_protocol_from[1]: \"lb.example\" is not a CIDR"},
      {[](Config* c) {
         c->mutable_listeners(0)->set_proxy_protocol(true);
         c->mutable_listeners(0)->add_proxy_protocol_from("10.0.0.0/33");
       },
       "listeners[0].proxy_protocol_from[0]: \"10.0.0.0/33\": prefix length must be 0..32"},
      {[](Config* c) {
         c->mutable_listeners(0)->set_proxy_protocol(true);
         c->mutable_listeners(0)->add_proxy_protocol_from("10.0.0.1/8");
       },
       "listeners[0].proxy_protocol_from[0]: \"10.0.0.1/8\" has host bits set past the /8 "
       "prefix"},
      {[](Config* c) { c->mutable_tls()->mutable_certificates(0)->clear_key_file(); },
       "tls.certificates[0].key_file: must not be empty"},
      {[](Config* c) { c->mutable_relay()->set_accepted_domains(0, "exa mple.com"); },
       "relay.accepted_domains[0]: \"exa mple.com\" is not a domain"},
      {[](Config* c) { c->mutable_relay()->set_accepted_domains(0, "-bad.com"); },
       "relay.accepted_domains[0]: "},
      {[](Config* c) { c->mutable_relay()->set_accepted_domains(0, "a..b"); },
       "relay.accepted_domains[0]: "},
      {[](Config* c) { c->mutable_relay()->set_accepted_domains(1, "1.2.3.4"); },
       "relay.accepted_domains[1]: "},
      {[](Config* c) { c->mutable_relay()->set_trusted_networks(0, "10.0.0.0/33"); },
       "relay.trusted_networks[0]: \"10.0.0.0/33\": prefix length must be 0..32"},
      {[](Config* c) { c->mutable_relay()->set_trusted_networks(0, "10.0.0.0/"); },
       "relay.trusted_networks[0]: \"10.0.0.0/\": prefix length"},
      {[](Config* c) { c->mutable_relay()->set_trusted_networks(0, "10.0.0.0/-1"); },
       "relay.trusted_networks[0]: \"10.0.0.0/-1\": prefix length"},
      {[](Config* c) { c->mutable_relay()->set_trusted_networks(1, "2001:db8::/129"); },
       "relay.trusted_networks[1]: \"2001:db8::/129\": prefix length must be 0..128"},
      {[](Config* c) { c->mutable_relay()->set_trusted_networks(1, "2001:db8::1/32"); },
       "relay.trusted_networks[1]: \"2001:db8::1/32\" has host bits set past the /32 prefix"},
      {[](Config* c) { c->mutable_relay()->set_trusted_networks(0, "10.0.0.1/8"); },
       "relay.trusted_networks[0]: \"10.0.0.1/8\" has host bits"},
      {[](Config* c) { c->mutable_relay()->set_trusted_networks(0, "localhost"); },
       "relay.trusted_networks[0]: \"localhost\" is not a CIDR"},
      {[](Config* c) { c->mutable_relay()->set_require_tls_domains(0, "exa mple.com"); },
       "relay.require_tls_domains[0]: \"exa mple.com\" is not a domain"},
      {[](Config* c) { c->mutable_relay()->add_require_tls_domains(".example.com"); },
       "relay.require_tls_domains[1]: "},
      {[](Config* c) { c->mutable_relay()->clear_users_file(); },
       "relay.sender_login_match: needs relay.users_file"},
      {[](Config* c) { c->mutable_routes(0)->set_next_hop("mx.example.com"); },
       "routes[0].next_hop: \"mx.example.com\" is not host:port"},
      {[](Config* c) { c->mutable_routes(1)->set_domain("EXAMPLE.com"); },
       "routes[1].domain: duplicate route"},
      {[](Config* c) { c->mutable_dns()->set_servers(0, "127.0.0.1"); },
       "dns.servers[0]: \"127.0.0.1\" is not ip:port"},
      {[](Config* c) { c->mutable_delivery()->set_smtp_port(65536); },
       "delivery.smtp_port: 65536 is not a port"},
      {[](Config* c) { c->mutable_partners(1)->set_domain(".PARTNER.example"); },
       "partners[1].domain: duplicate partner"},
      {[](Config* c) { c->mutable_partners(0)->set_domain("..partner.example"); },
       "partners[0].domain: "},
      {[](Config* c) { c->mutable_partners(0)->mutable_outbound()->set_pins(0, "sha256:abc"); },
       "partners[0].outbound.pins[0]: \"sha256:abc\" is not sha256:<64 hex digits>"},
      {[](Config* c) {
         c->mutable_partners(0)->mutable_outbound()->set_pins(0, "md5:" + std::string(64, 'a'));
       },
       "partners[0].outbound.pins[0]: "},
      {[](Config* c) {
         c->mutable_partners(0)->mutable_outbound()->set_pins(0, "sha256:" + std::string(64, 'g'));
       },
       "partners[0].outbound.pins[0]: "},
      {[](Config* c) { c->mutable_partners(0)->mutable_outbound()->clear_pins(); },
       "partners[0].outbound.pins: tls: pin needs at least one pin"},
      {[](Config* c) {
         c->mutable_partners(0)->mutable_outbound()->set_tls(v1::OUTBOUND_TLS_MODE_VERIFY);
       },
       "partners[0].outbound.pins: pins are only checked with tls: pin"},
      {[](Config* c) { c->mutable_partners(0)->mutable_outbound()->set_match(0, "a b"); },
       "partners[0].outbound.match[0]: "},
      {[](Config* c) { c->mutable_partners(0)->mutable_inbound()->add_pins("sha256:"); },
       "partners[0].inbound.pins[1]: "},
      {[](Config* c) { c->mutable_limits()->set_max_message_size(0); },
       "limits.max_message_size: must be > 0"},
      {[](Config* c) { c->mutable_limits()->set_max_connections(0); },
       "limits.max_connections: must be > 0"},
      {[](Config* c) { c->mutable_control()->set_admin_socket("/" + std::string(107, 'a')); },
       "control.admin_socket: path is 108 bytes"},
      {[](Config* c) { c->mutable_control()->set_grpc_listen("7443"); },
       "control.grpc_listen: \"7443\" is not ip:port"},
      {[](Config* c) { c->mutable_control()->clear_metrics_listen(); },
       "control.metrics_listen: \"\" is not ip:port"},
      {[](Config* c) { c->mutable_cluster()->set_primary("node-a"); },
       "cluster.primary: \"node-a\" is not host:port"},
      {[](Config* c) { c->mutable_node()->mutable_drain_timeout()->set_seconds(-1); },
       "node.drain_timeout: must be a positive duration"},
      {[](Config* c) { c->mutable_delivery()->mutable_retry_schedule(2)->set_seconds(0); },
       "delivery.retry_schedule[2]: must be a positive duration"},
      {[](Config* c) { c->mutable_limits()->mutable_command_timeout()->set_seconds(0); },
       "limits.command_timeout: must be a positive duration"},
      // Binary junk is escaped in the message.
      {[](Config* c) { c->mutable_dns()->set_servers(0, "\x1b[31m"); },
       "dns.servers[0]: \"\\x1b[31m\" is not ip:port"},
  };
  for (const auto& t : kCases) {
    Config c = ValidBase();
    t.breaks(&c);
    absl::Status s = ValidateConfig(c);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << t.error_prefix;
    EXPECT_THAT(std::string(s.message()), StartsWith(t.error_prefix));
  }
}

TEST(ConfigDefaultsTest, ValidationAcceptsEdgeValues) {
  const std::function<void(Config*)> kCases[] = {
      [](Config* c) { c->mutable_node()->set_workers(1024); },
      [](Config* c) { c->mutable_listeners(0)->set_address("255.255.255.255:65535"); },
      [](Config* c) { c->mutable_listeners(0)->set_address("[::]:1"); },
      [](Config* c) { c->mutable_routes(0)->set_next_hop("[10.0.0.5]:25"); },
      [](Config* c) { c->mutable_routes(0)->set_next_hop("10.0.0.5:25"); },
      [](Config* c) { c->mutable_relay()->set_accepted_domains(0, "xn--bcher-kva.example"); },
      [](Config* c) { c->mutable_relay()->set_trusted_networks(0, "::1/128"); },
      [](Config* c) { c->mutable_relay()->set_trusted_networks(0, "::/0"); },
      [](Config* c) {
        v1::Listener* l = c->mutable_listeners(0);
        l->set_proxy_protocol(true);
        l->add_proxy_protocol_from("10.0.0.5");
        l->add_proxy_protocol_from("192.0.2.0/24");
        l->add_proxy_protocol_from("2001:db8::/48");
      },
      [](Config* c) { c->mutable_dns()->set_servers(0, "[2001:db8::53]:53"); },
      [](Config* c) { c->mutable_control()->set_admin_socket("/" + std::string(106, 'a')); },
      [](Config* c) { c->mutable_control()->clear_grpc_listen(); },
      [](Config* c) { c->mutable_delivery()->mutable_retry_schedule(0)->set_nanos(1); },
  };
  for (const auto& change : kCases) {
    Config c = ValidBase();
    change(&c);
    absl::Status s = ValidateConfig(c);
    EXPECT_TRUE(s.ok()) << s;
  }
}

TEST(ConfigDefaultsTest, NodeConfigNeedsAListener) {
  EXPECT_TRUE(ValidateNodeConfig(ValidBase()).ok());
  absl::StatusOr<Config> defaults = ParseConfigYaml(DefaultConfigYaml(), "<embedded defaults>");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_TRUE(ValidateNodeConfig(*defaults).ok());

  // An empty file is a valid config (all defaults), but no node.
  absl::StatusOr<Config> empty = ParseConfigYaml("", "empty.yaml");
  ASSERT_TRUE(empty.ok()) << empty.status();
  absl::Status s = ValidateNodeConfig(*empty);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "listeners: none configured; a node needs at least one SMTP listener");
  absl::StatusOr<Config> none = ParseConfigYaml("listeners: []\n", "none.yaml");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(ValidateNodeConfig(*none).ok());
}

}  // namespace
}  // namespace postern::control
