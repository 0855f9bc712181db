#include "control/config_loader.h"

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "control/config_defaults.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace postern::control {
namespace {

namespace v1 = ::postern::config::v1;
using ::postern::config::v1::Config;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kCorpus[] = "control/testdata/config_corpus/";

absl::StatusOr<Config> Parse(std::string_view yaml) { return ParseConfigYaml(yaml, "config.yaml"); }

// The error message for a YAML text that must not load.
std::string ErrorOf(std::string_view yaml) {
  absl::StatusOr<Config> config = Parse(yaml);
  EXPECT_FALSE(config.ok()) << "loaded but should not have:\n" << yaml;
  if (config.ok()) return "";
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << config.status();
  return std::string(config.status().message());
}

// The config for a YAML text that must load.
Config Loaded(std::string_view yaml) {
  absl::StatusOr<Config> config = Parse(yaml);
  EXPECT_TRUE(config.ok()) << config.status() << "\nfor:\n" << yaml;
  return config.ok() ? *config : Config();
}

TEST(ConfigLoaderTest, SpecExampleLoads) {
  absl::StatusOr<Config> loaded = LoadConfigFile(std::string(kCorpus) + "spec_example.yaml");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const Config& c = *loaded;

  EXPECT_EQ(c.node().name(), "node-a");
  EXPECT_EQ(c.node().hostname(), "node-a");  // defaulted from name
  EXPECT_EQ(c.node().data_dir(), "/var/lib/postern");
  EXPECT_EQ(c.node().workers(), 0u);  // auto

  ASSERT_EQ(c.listeners_size(), 3);
  EXPECT_EQ(c.listeners(0).name(), "mx");
  EXPECT_EQ(c.listeners(0).address(), "0.0.0.0:25");
  EXPECT_EQ(c.listeners(0).tls(), v1::LISTENER_TLS_OFFER);
  EXPECT_EQ(c.listeners(0).auth(), v1::LISTENER_AUTH_NONE);
  EXPECT_FALSE(c.listeners(0).proxy_protocol());
  EXPECT_EQ(c.listeners(1).tls(), v1::LISTENER_TLS_REQUIRE);
  EXPECT_EQ(c.listeners(1).auth(), v1::LISTENER_AUTH_AFTER_TLS);
  EXPECT_EQ(c.listeners(2).name(), "submissions");
  EXPECT_EQ(c.listeners(2).tls(), v1::LISTENER_TLS_IMPLICIT);

  EXPECT_EQ(c.tls().min_version(), v1::TLS_VERSION_1_2);
  EXPECT_EQ(c.tls().ciphers(), v1::CIPHER_CLASS_PFS);
  ASSERT_EQ(c.tls().certificates_size(), 1);
  EXPECT_EQ(c.tls().certificates(0).key_file(), "/etc/postern/mx.key");

  ASSERT_EQ(c.relay().accepted_domains_size(), 1);
  EXPECT_EQ(c.relay().accepted_domains(0), "example.com");
  ASSERT_EQ(c.relay().trusted_networks_size(), 1);
  EXPECT_EQ(c.relay().trusted_networks(0), "127.0.0.0/8");
  EXPECT_EQ(c.relay().users_file(), "/etc/postern/users");

  ASSERT_EQ(c.routes_size(), 1);
  EXPECT_EQ(c.routes(0).next_hop(), "10.0.0.5:25");
  ASSERT_EQ(c.dns().servers_size(), 1);
  EXPECT_EQ(c.dns().servers(0), "127.0.0.1:53");

  EXPECT_EQ(c.delivery().smtp_port(), 25u);
  EXPECT_EQ(c.delivery().max_queue_lifetime().seconds(), 120 * 3600);
  EXPECT_EQ(c.delivery().tls_failure_max_defer().seconds(), 24 * 3600);
  ASSERT_EQ(c.delivery().retry_schedule_size(), 5);
  EXPECT_EQ(c.delivery().retry_schedule(0).seconds(), 60);
  EXPECT_EQ(c.delivery().retry_schedule(2).seconds(), 15 * 60);
  EXPECT_EQ(c.delivery().retry_schedule(4).seconds(), 3600);

  ASSERT_EQ(c.partners_size(), 1);
  EXPECT_EQ(c.partners(0).domain(), "partner.example");
  EXPECT_EQ(c.partners(0).outbound().tls(), v1::OUTBOUND_TLS_MODE_VERIFY);
  EXPECT_EQ(c.partners(0).outbound().min_version(), v1::TLS_VERSION_1_2);
  ASSERT_EQ(c.partners(0).outbound().match_size(), 1);
  EXPECT_EQ(c.partners(0).outbound().match(0), "mx.partner.example");
  EXPECT_EQ(c.partners(0).outbound().pins_size(), 0);
  EXPECT_TRUE(c.partners(0).inbound().require_tls());

  EXPECT_EQ(c.limits().max_message_size(), 50u * 1024 * 1024);
  EXPECT_EQ(c.limits().max_recipients(), 1000u);
  EXPECT_EQ(c.limits().max_connections_per_ip(), 100u);

  EXPECT_EQ(c.control().admin_socket(), "/run/postern/admin.sock");
  EXPECT_EQ(c.control().grpc_listen(), "0.0.0.0:7443");
  EXPECT_EQ(c.control().metrics_listen(), "0.0.0.0:9464");
  EXPECT_EQ(c.cluster().primary(), "node-a:7443");
}

TEST(ConfigLoaderTest, MissingFileIsNotFound) {
  absl::StatusOr<Config> loaded = LoadConfigFile("control/testdata/no-such-file.yaml");
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kNotFound) << loaded.status();
  EXPECT_THAT(std::string(loaded.status().message()), HasSubstr("no-such-file.yaml"));
}

TEST(ConfigLoaderTest, FileErrorsNameTheFile) {
  absl::StatusOr<Config> loaded = LoadConfigFile(std::string(kCorpus) + "bad_enum.yaml");
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(std::string(loaded.status().message()),
              StartsWith(std::string(kCorpus) + "bad_enum.yaml:2:45: listeners[0].tls: "));
}

TEST(ConfigLoaderTest, EmptyTextIsAllDefaults) {
  Config expected;
  ApplyDefaults(&expected);
  for (std::string_view yaml : {"", "# only a comment\n", "---\n", "~\n"}) {
    Config loaded = Loaded(yaml);
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(loaded, expected))
        << "for " << yaml << ":\n"
        << loaded.DebugString();
  }
}

TEST(ConfigLoaderTest, NullSectionsAreEmpty) {
  Config c = Loaded("node:\nlisteners:\ntls:\npartners:\n");
  EXPECT_EQ(c.listeners_size(), 0);
  EXPECT_EQ(c.tls().min_version(), v1::TLS_VERSION_1_2);
}

TEST(ConfigLoaderTest, UnknownKeyNamesKeyAndLine) {
  EXPECT_THAT(ErrorOf("node:\n  name: a\n  foo: 1\n"),
              StartsWith("config.yaml:3:3: node.foo: unknown key (expected one of: name, "
                         "data_dir, workers, drain_timeout, hostname)"));
  EXPECT_THAT(ErrorOf("nodes: {}\n"), StartsWith("config.yaml:1:1: nodes: unknown key"));
  // Keys are the proto field names exactly.
  EXPECT_THAT(ErrorOf("node: { dataDir: /x }\n"), StartsWith("config.yaml:1:9: node.dataDir: "));
  EXPECT_THAT(ErrorOf("listeners:\n  - { name: a, adress: \"127.0.0.1:1\" }\n"),
              StartsWith("config.yaml:2:16: listeners[0].adress: unknown key"));
}

TEST(ConfigLoaderTest, BadEnumValueListsTheChoices) {
  EXPECT_EQ(ErrorOf("listeners:\n"
                    "  - name: a\n"
                    "    address: \"127.0.0.1:1\"\n"
                    "  - name: b\n"
                    "    address: \"127.0.0.1:2\"\n"
                    "    tls: maybe\n"),
            "config.yaml:6:10: listeners[1].tls: unknown value \"maybe\" "
            "(expected none, offer, require, implicit)");
  EXPECT_EQ(ErrorOf("tls: { min_version: \"1.4\" }\n"),
            "config.yaml:1:21: tls.min_version: unknown value \"1.4\" (expected 1.2, 1.3)");
  // UNSPECIFIED is the proto's "not set", never a value to write.
  EXPECT_THAT(ErrorOf("tls: { ciphers: unspecified }\n"), HasSubstr("unknown value"));
  // The prefix is not part of the value.
  EXPECT_THAT(ErrorOf("tls: { ciphers: cipher_class_pfs }\n"), HasSubstr("unknown value"));
  EXPECT_THAT(ErrorOf("delivery: { default_tls: 2 }\n"), HasSubstr("unknown value \"2\""));
  EXPECT_THAT(ErrorOf("delivery: { default_tls: \"\" }\n"), HasSubstr("unknown value \"\""));
}

TEST(ConfigLoaderTest, EnumsAreCaseInsensitiveAndDotted) {
  Config c = Loaded(
      "listeners: [{ name: a, address: \"127.0.0.1:1\", tls: REQUIRE, auth: After_TLS }]\n"
      "tls: { min_version: 1.3, ciphers: Compat }\n"
      "delivery: { default_tls: verify }\n");
  EXPECT_EQ(c.listeners(0).tls(), v1::LISTENER_TLS_REQUIRE);
  EXPECT_EQ(c.listeners(0).auth(), v1::LISTENER_AUTH_AFTER_TLS);
  EXPECT_EQ(c.tls().min_version(), v1::TLS_VERSION_1_3);
  EXPECT_EQ(c.tls().ciphers(), v1::CIPHER_CLASS_COMPAT);
  EXPECT_EQ(c.delivery().default_tls(), v1::OUTBOUND_TLS_MODE_VERIFY);
}

TEST(ConfigLoaderTest, WrongYamlKindNamesTheKey) {
  EXPECT_EQ(ErrorOf("node: [1, 2]\n"), "config.yaml:1:7: node: expected a map, got a list");
  EXPECT_EQ(ErrorOf("listeners: { name: a }\n"),
            "config.yaml:1:12: listeners: expected a list, got a map");
  EXPECT_EQ(ErrorOf("node: { name: { a: 1 } }\n"),
            "config.yaml:1:15: node.name: expected a string, got a map");
  EXPECT_EQ(ErrorOf("relay: { trusted_networks: 10.0.0.0/8 }\n"),
            "config.yaml:1:28: relay.trusted_networks: expected a list, got the scalar "
            "\"10.0.0.0/8\" (write [value] for a list of one)");
  EXPECT_THAT(ErrorOf("delivery: { retry_schedule: [[1m]] }\n"),
              StartsWith("config.yaml:1:30: delivery.retry_schedule[0]: expected a duration, got "
                         "a list"));
  EXPECT_THAT(ErrorOf("node: { drain_timeout: { seconds: 5 } }\n"),
              HasSubstr("node.drain_timeout: expected a duration, got a map"));
  EXPECT_THAT(ErrorOf("delivery:\n  hold: [true]\n"),
              StartsWith("config.yaml:2:9: delivery.hold: expected true or false, got a list"));
  // A key with nothing after it is null; for a scalar that is a mistake,
  // reported at the key.
  EXPECT_EQ(ErrorOf("node:\n  name:\n  data_dir: /x\n"),
            "config.yaml:2:3: node.name: expected a string, got nothing");
  EXPECT_THAT(ErrorOf("- a\n- b\n"), StartsWith("config.yaml:1:1: expected a map of sections"));
  EXPECT_THAT(ErrorOf("hello\n"), StartsWith("config.yaml:1:1: expected a map of sections"));
  EXPECT_THAT(ErrorOf("? [a]\n: b\n"), HasSubstr("a key must be a name, got a list"));
}

TEST(ConfigLoaderTest, DuplicateKeysAreErrors) {
  EXPECT_EQ(ErrorOf("node:\n  name: a\n  name: b\n"),
            "config.yaml:3:3: node.name: duplicate key (first at line 2)");
  EXPECT_EQ(ErrorOf("node: {}\nrelay: {}\nnode: {}\n"),
            "config.yaml:3:1: node: duplicate key (first at line 1)");
  EXPECT_THAT(ErrorOf("limits: { max_recipients: 1, max_recipients: 2 }\n"),
              StartsWith("config.yaml:1:30: limits.max_recipients: duplicate key"));
}

TEST(ConfigLoaderTest, ByteSizes) {
  const struct {
    const char* text;
    uint64_t bytes;
  } kGood[] = {
      {"1", 1},
      {"1024", 1024},
      {"100B", 100},
      {"64K", 64 << 10},
      {"64KB", 64 << 10},
      {"64kb", 64 << 10},
      {"64KiB", 64 << 10},
      {"50MB", 50u << 20},
      {"\"50 MiB\"", 50u << 20},
      {"1GiB", 1u << 30},
      {"2G", 2ull << 30},
      {"3TB", 3ull << 40},
      {"18446744073709551615", 18446744073709551615ull},
  };
  for (const auto& t : kGood) {
    Config c = Loaded(std::string("limits: { max_message_size: ") + t.text + " }\n");
    EXPECT_EQ(c.limits().max_message_size(), t.bytes) << t.text;
  }
  for (const char* bad : {"50XB", "MB", "-5", "1.5MB", "50 M B", "0x10", "five"}) {
    EXPECT_THAT(
        ErrorOf(std::string("limits: { max_message_size: ") + bad + " }\n"),
        HasSubstr("limits.max_message_size: \"" + std::string(bad) + "\" is not a byte size"))
        << bad;
  }
  EXPECT_THAT(ErrorOf("limits: { max_message_size: 18446744073709551616 }\n"),
              HasSubstr("is too large"));
  EXPECT_THAT(ErrorOf("limits: { max_message_size: 16777216TB }\n"), HasSubstr("is too large"));
  // Only fields marked byte_size take units.
  EXPECT_THAT(ErrorOf("limits: { max_recipients: 1K }\n"),
              HasSubstr("limits.max_recipients: \"1K\" is not a whole number"));
}

TEST(ConfigLoaderTest, Durations) {
  const struct {
    const char* text;
    int64_t seconds;
    int32_t nanos;
  } kGood[] = {
      {"30s", 30, 0},      {"5m", 300, 0},           {"1h", 3600, 0},
      {"120h", 432000, 0}, {"1d", 86400, 0},         {"500ms", 0, 500000000},
      {"1h30m", 5400, 0},  {"1m1s1ms", 61, 1000000}, {"2d12h", 216000, 0},
  };
  for (const auto& t : kGood) {
    Config c = Loaded(std::string("node: { drain_timeout: ") + t.text + " }\n");
    EXPECT_EQ(c.node().drain_timeout().seconds(), t.seconds) << t.text;
    EXPECT_EQ(c.node().drain_timeout().nanos(), t.nanos) << t.text;
  }
  EXPECT_EQ(ErrorOf("node: { drain_timeout: 30 }\n"),
            "config.yaml:1:24: node.drain_timeout: \"30\" has no unit (e.g. 30s or 30m)");
  for (const char* bad : {"5 m", "1.5h", "-1s", "1w", "30S", "h", "1h30", "\"\""}) {
    EXPECT_THAT(ErrorOf(std::string("node: { drain_timeout: ") + bad + " }\n"),
                HasSubstr("is not a duration"))
        << bad;
  }
  EXPECT_THAT(ErrorOf("node: { drain_timeout: 999999999999999d }\n"), HasSubstr("is too long"));
  // Zero parses but is not a useful duration anywhere in the config.
  EXPECT_EQ(ErrorOf("node:\n  drain_timeout: 0s\n"),
            "config.yaml:2:18: node.drain_timeout: must be a positive duration");
  Config c = Loaded("delivery: { retry_schedule: [10s, 2m] }\n");
  ASSERT_EQ(c.delivery().retry_schedule_size(), 2);
  EXPECT_EQ(c.delivery().retry_schedule(1).seconds(), 120);
}

TEST(ConfigLoaderTest, AutoOnlyWhereAllowed) {
  EXPECT_EQ(Loaded("node: { workers: auto }\n").node().workers(), 0u);
  EXPECT_EQ(Loaded("node: { workers: AUTO }\n").node().workers(), 0u);
  EXPECT_EQ(Loaded("node: { workers: 8 }\n").node().workers(), 8u);
  EXPECT_EQ(Loaded("node: { workers: 0 }\n").node().workers(), 0u);  // 0 is auto too
  EXPECT_THAT(ErrorOf("node: { workers: automatic }\n"),
              HasSubstr("node.workers: \"automatic\" is not a whole number or auto"));
  EXPECT_THAT(ErrorOf("limits: { max_recipients: auto }\n"),
              HasSubstr("limits.max_recipients: \"auto\" is not a whole number"));
}

TEST(ConfigLoaderTest, BoolsAreTrueOrFalseOnly) {
  EXPECT_TRUE(Loaded("delivery: { hold: true }\n").delivery().hold());
  EXPECT_TRUE(Loaded("delivery: { hold: True }\n").delivery().hold());
  EXPECT_FALSE(Loaded("delivery: { hold: false }\n").delivery().hold());
  for (const char* yaml11 : {"yes", "no", "on", "off", "Y", "N", "YES"}) {
    EXPECT_THAT(ErrorOf(std::string("delivery:\n  hold: ") + yaml11 + "\n"),
                StartsWith(std::string("config.yaml:2:9: delivery.hold: \"") + yaml11 +
                           "\" is not accepted as a boolean: write true or false"))
        << yaml11;
  }
  EXPECT_THAT(ErrorOf("delivery: { hold: 1 }\n"),
              HasSubstr("delivery.hold: \"1\" is not a boolean (true or false)"));
}

TEST(ConfigLoaderTest, IntegersAreRangeChecked) {
  EXPECT_EQ(Loaded("limits: { max_recipients: 4294967295 }\n").limits().max_recipients(),
            4294967295u);
  EXPECT_THAT(ErrorOf("limits: { max_recipients: 4294967296 }\n"),
              HasSubstr("limits.max_recipients: \"4294967296\" is out of range (at most "
                        "4294967295)"));
  EXPECT_THAT(ErrorOf("limits: { max_recipients: -1 }\n"),
              HasSubstr("limits.max_recipients: \"-1\" must not be negative"));
  for (const char* bad : {"12abc", "0x10", "1e3", "+5", "1 000", "1.0"}) {
    EXPECT_THAT(ErrorOf(std::string("limits: { max_recipients: \"") + bad + "\" }\n"),
                HasSubstr("is not a whole number"))
        << bad;
  }
}

TEST(ConfigLoaderTest, ExplicitZeroThatADefaultWouldReplaceIsAnError) {
  EXPECT_EQ(ErrorOf("limits:\n  max_message_size: 0\n"),
            "config.yaml:2:21: limits.max_message_size: an empty or zero value here means \"use "
            "the default\" (52428800); remove the key or write the value you want");
  EXPECT_THAT(ErrorOf("node: { data_dir: \"\" }\n"),
              HasSubstr("node.data_dir: an empty or zero value here means \"use the default\" "
                        "(\"./var/postern\")"));
  EXPECT_THAT(ErrorOf("delivery: { smtp_port: 0 }\n"), HasSubstr("delivery.smtp_port: an empty"));
  // Where the empty value is meaningful, it stays.
  EXPECT_EQ(Loaded("control: { grpc_listen: \"\" }\n").control().grpc_listen(), "");
  EXPECT_EQ(Loaded("relay: { users_file: \"\" }\n").relay().users_file(), "");
}

TEST(ConfigLoaderTest, RelayTlsAndLoginFields) {
  const Config c = Loaded(
      "relay:\n"
      "  users_file: /etc/postern/users\n"
      "  require_tls_domains: [secure.example.com, vault.example]\n"
      "  sender_login_match: true\n");
  ASSERT_EQ(c.relay().require_tls_domains_size(), 2);
  EXPECT_EQ(c.relay().require_tls_domains(1), "vault.example");
  EXPECT_TRUE(c.relay().sender_login_match());
  EXPECT_FALSE(Loaded("relay: { sender_login_match: false }\n").relay().sender_login_match());
  EXPECT_EQ(ErrorOf("relay:\n  require_tls_domains: [a.example, \"b example\"]\n"),
            "config.yaml:2:36: relay.require_tls_domains[1]: \"b example\" is not a domain");
  EXPECT_THAT(ErrorOf("relay: { sender_login_match: true }\n"),
              HasSubstr("relay.sender_login_match: needs relay.users_file"));
}

TEST(ConfigLoaderTest, ProxyProtocolFromLoads) {
  const Config c = Loaded(
      "listeners:\n"
      "  - name: lb\n"
      "    address: \"0.0.0.0:25\"\n"
      "    proxy_protocol: true\n"
      "    proxy_protocol_from: [10.0.0.5/32, \"2001:db8::/48\"]\n");
  ASSERT_EQ(c.listeners_size(), 1);
  EXPECT_TRUE(c.listeners(0).proxy_protocol());
  ASSERT_EQ(c.listeners(0).proxy_protocol_from_size(), 2);
  EXPECT_EQ(c.listeners(0).proxy_protocol_from(0), "10.0.0.5/32");
  EXPECT_EQ(c.listeners(0).proxy_protocol_from(1), "2001:db8::/48");
}

TEST(ConfigLoaderTest, ValidationErrorsPointAtTheLine) {
  EXPECT_EQ(ErrorOf("node: { name: n }\n"
                    "listeners:\n"
                    "  - { name: a, address: \"1.2.3.4\" }\n"),
            "config.yaml:3:25: listeners[0].address: \"1.2.3.4\" is not ip:port or [ipv6]:port");
  EXPECT_EQ(ErrorOf("relay:\n  trusted_networks: [127.0.0.0/8, 10.1.0.0/8]\n"),
            "config.yaml:2:35: relay.trusted_networks[1]: \"10.1.0.0/8\" has host bits set past "
            "the /8 prefix");
  // A key the admin did not write points at the nearest one they did.
  EXPECT_EQ(ErrorOf("listeners:\n"
                    "  - { name: a, address: \"127.0.0.1:1\" }\n"
                    "  - { name: a, address: \"127.0.0.1:2\" }\n"),
            "config.yaml:3:13: listeners[1].name: duplicate listener name \"a\"");
  EXPECT_EQ(ErrorOf("listeners:\n"
                    "  - { name: a, address: \"127.0.0.1:1\" }\n"
                    "  - { name: b, address: \"127.0.0.1:2\", proxy_protocol: true }\n"),
            "config.yaml:3:5: listeners[1].proxy_protocol_from: required when proxy_protocol "
            "is true (the load balancers' networks)");
  EXPECT_EQ(ErrorOf("listeners:\n"
                    "  - name: a\n"
                    "    address: \"127.0.0.1:1\"\n"
                    "    proxy_protocol: true\n"
                    "    proxy_protocol_from: [10.0.0.0/8, 10.1.0.0/8]\n"),
            "config.yaml:5:39: listeners[0].proxy_protocol_from[1]: \"10.1.0.0/8\" has host "
            "bits set past the /8 prefix");
  EXPECT_EQ(ErrorOf("partners:\n  - domain: p.example\n    outbound: { tls: pin }\n"),
            "config.yaml:3:15: partners[0].outbound.pins: tls: pin needs at least one pin");
}

TEST(ConfigLoaderTest, YamlSyntaxErrorsAreStatuses) {
  EXPECT_THAT(ErrorOf("node: { name: a\nlisteners: [\n"), StartsWith("config.yaml:"));
  EXPECT_THAT(ErrorOf("node: { name: a\nlisteners: [\n"), HasSubstr("YAML syntax error"));
  EXPECT_EQ(ErrorOf("node: {name: a}}\n"), "config.yaml:1:16: YAML syntax error: illegal flow end");
  EXPECT_THAT(ErrorOf("a: b: c\n"), StartsWith("config.yaml:1:5: YAML syntax error: "));
  EXPECT_THAT(ErrorOf("a: *nowhere\n"), HasSubstr("YAML syntax error"));
  EXPECT_EQ(ErrorOf("node: {name: a}\n---\nnode: {name: b}\n"),
            "config.yaml:2:1: a config file holds one YAML document; found more from here on");
  // yaml-cpp's LoadAll never returns on these (it keeps starting documents
  // at the ','); the loader reports them.
  EXPECT_EQ(ErrorOf(",\n"), "config.yaml:1:1: YAML syntax error: unexpected \",\"");
  EXPECT_THAT(ErrorOf(",ode:\n  nna,me:, b\n"), HasSubstr("YAML syntax error: unexpected"));
}

TEST(ConfigLoaderTest, AliasesWorkAndCyclesDoNotHang) {
  Config c = Loaded("node: { name: &n node-a, hostname: *n }\n");
  EXPECT_EQ(c.node().hostname(), "node-a");
  Config shared = Loaded(
      "listeners:\n"
      "  - &l { name: a, address: \"127.0.0.1:1\" }\n"
      "relay: { accepted_domains: &d [a.example] }\n"
      "partners: [{ domain: p.example, outbound: { match: *d } }]\n");
  ASSERT_EQ(shared.partners(0).outbound().match_size(), 1);
  EXPECT_EQ(shared.partners(0).outbound().match(0), "a.example");
  EXPECT_THAT(ErrorOf("listeners: [&l { name: a, address: \"127.0.0.1:1\" }, *l]\n"),
              HasSubstr("listeners[1].name: duplicate listener name"));
  // A self-referencing anchor would be a cycle.
  EXPECT_EQ(ErrorOf("listeners: &l [*l]\n"),
            "config.yaml:1:16: an alias may not refer to a node that contains it");
  EXPECT_THAT(ErrorOf("tls: &t { certificates: [*t] }\n"),
              HasSubstr("an alias may not refer to a node that contains it"));
}

TEST(ConfigLoaderTest, StringsMustBeUtf8AndErrorsAreEscaped) {
  Config c = Loaded("relay: { users_file: \"/etc/p\xc3\xa9/users\" }\n");
  EXPECT_EQ(c.relay().users_file(), "/etc/p\xc3\xa9/users");
  EXPECT_THAT(ErrorOf("relay: { users_file: \"/etc/\xff\" }\n"),
              HasSubstr("relay.users_file: \"/etc/\\xff\" is not valid UTF-8"));
  // A control character in an unknown key reaches the message escaped.
  EXPECT_THAT(ErrorOf("node: { \"a\\x01b\": 1 }\n"),
              HasSubstr("node.\"a\\x01\\x62\": unknown key"));
}

TEST(ConfigLoaderTest, SeedCorpusNeverThrows) {
  // Every seed either loads or fails with a status; an escaping exception
  // would abort this test.
  for (const char* name :
       {"alias_cycle.yaml", "bad_enum.yaml", "comment_only.yaml", "duplicate_key.yaml",
        "embedded_defaults.yaml", "empty.yaml", "multi_document.yaml", "proxy_protocol_from.yaml",
        "spec_example.yaml", "syntax_error.yaml", "values.yaml", "wrong_types.yaml"}) {
    absl::StatusOr<Config> loaded = LoadConfigFile(std::string(kCorpus) + name);
    EXPECT_NE(loaded.status().code(), absl::StatusCode::kNotFound) << name;
  }
  EXPECT_TRUE(LoadConfigFile(std::string(kCorpus) + "values.yaml").ok());
  EXPECT_TRUE(LoadConfigFile(std::string(kCorpus) + "embedded_defaults.yaml").ok());
  absl::StatusOr<Config> proxy = LoadConfigFile(std::string(kCorpus) + "proxy_protocol_from.yaml");
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  EXPECT_EQ(proxy->listeners(0).proxy_protocol_from_size(), 3);
}

}  // namespace
}  // namespace postern::control
