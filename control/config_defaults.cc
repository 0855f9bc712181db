#include "control/config_defaults.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <climits>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/quote.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/message.h"

namespace postern::control {
namespace {

namespace pb = ::google::protobuf;
namespace v1 = ::postern::config::v1;
using ::postern::config::v1::Config;

// Keep in step with docs/CONFIG.md "Embedded defaults". Only what differs from
// ApplyDefaults is written here; everything else comes from there.
constexpr std::string_view kDefaultConfigYaml =
    R"yaml(# Postern's embedded defaults: what posternd runs with without --config.
node:
  data_dir: ./var/postern
  workers: auto
listeners:
  - { name: mta,         address: "127.0.0.1:2525", tls: offer,    auth: none }
  - { name: submission,  address: "127.0.0.1:2587", tls: require,  auth: after_tls }
  - { name: submissions, address: "127.0.0.1:2465", tls: implicit, auth: after_tls }
relay:
  trusted_networks: [127.0.0.0/8]
control:
  metrics_listen: "127.0.0.1:9464"
)yaml";

constexpr char kDefaultDataDir[] = "./var/postern";
constexpr char kDefaultMetricsListen[] = "127.0.0.1:9464";
constexpr uint64_t kDefaultMaxMessageSize = 50ull * 1024 * 1024;
constexpr uint32_t kMaxWorkers = 1024;
// sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
constexpr size_t kMaxUnixSocketPath = 107;

std::string HostName() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

// ---------------------------------------------------------------------------
// Value syntax checks. Each returns true for a well-formed value.

absl::Status Invalid(absl::string_view path, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", problem));
}

bool IsIpv4(absl::string_view s) {
  in_addr a;
  return inet_pton(AF_INET, std::string(s).c_str(), &a) == 1;
}

bool IsIpv6(absl::string_view s) {
  in6_addr a;
  return inet_pton(AF_INET6, std::string(s).c_str(), &a) == 1;
}

// 1..65535 in plain decimal.
bool IsPort(absl::string_view s) {
  if (s.empty() || s.size() > 5) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  uint32_t port = 0;
  return absl::SimpleAtoi(s, &port) && port >= 1 && port <= 65535;
}

struct HostPort {
  absl::string_view host;
  bool bracketed = false;
};

// Splits "host:port" / "[host]:port" and checks the port.
std::optional<HostPort> SplitHostPort(absl::string_view s) {
  HostPort hp;
  absl::string_view port;
  if (absl::ConsumePrefix(&s, "[")) {
    size_t close = s.find(']');
    if (close == absl::string_view::npos || s.substr(close + 1, 1) != ":") return std::nullopt;
    hp.host = s.substr(0, close);
    hp.bracketed = true;
    port = s.substr(close + 2);
  } else {
    size_t colon = s.rfind(':');
    if (colon == absl::string_view::npos) return std::nullopt;
    hp.host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  if (hp.host.empty() || !IsPort(port)) return std::nullopt;
  return hp;
}

bool IsDomain(absl::string_view s, bool allow_leading_dot) {
  if (allow_leading_dot) absl::ConsumePrefix(&s, ".");
  if (s.empty() || s.size() > 253) return false;
  absl::string_view last_label;
  for (absl::string_view label : absl::StrSplit(s, '.')) {
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    }
    last_label = label;
  }
  // An all-digit last label is an IP address, not a domain.
  for (char c : last_label) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return true;
  }
  return false;
}

// "ip:port" with an IPv4 address, or "[ipv6]:port".
bool IsIpPort(absl::string_view s) {
  std::optional<HostPort> hp = SplitHostPort(s);
  if (!hp) return false;
  return hp->bracketed ? IsIpv6(hp->host) : IsIpv4(hp->host);
}

// "host:port", "ipv4:port" or "[ip]:port".
bool IsHostPort(absl::string_view s) {
  std::optional<HostPort> hp = SplitHostPort(s);
  if (!hp) return false;
  if (hp->bracketed) return IsIpv6(hp->host) || IsIpv4(hp->host);
  return IsIpv4(hp->host) || IsDomain(hp->host, /*allow_leading_dot=*/false);
}

// "ip/len" or a bare "ip" (one host). Returns the problem, or nullopt if valid.
std::optional<std::string> CidrProblem(absl::string_view s) {
  absl::string_view addr = s;
  absl::string_view len_text;
  if (size_t slash = s.find('/'); slash != absl::string_view::npos) {
    addr = s.substr(0, slash);
    len_text = s.substr(slash + 1);
  }
  unsigned char bytes[16] = {};
  int family = 0;
  std::string addr_str(addr);
  if (inet_pton(AF_INET, addr_str.c_str(), bytes) == 1) {
    family = AF_INET;
  } else if (inet_pton(AF_INET6, addr_str.c_str(), bytes) == 1) {
    family = AF_INET6;
  } else {
    return absl::StrCat(Quote(s), " is not a CIDR (e.g. 10.0.0.0/8 or 2001:db8::/32)");
  }
  const int max_len = family == AF_INET ? 32 : 128;
  int len = max_len;
  if (s.find('/') != absl::string_view::npos) {
    bool digits = !len_text.empty() && len_text.size() <= 3;
    for (char c : len_text) digits = digits && absl::ascii_isdigit(static_cast<unsigned char>(c));
    if (!digits || !absl::SimpleAtoi(len_text, &len) || len > max_len) {
      return absl::StrCat(Quote(s), ": prefix length must be 0..", max_len);
    }
  }
  // Bits set past the prefix are almost always a typo for a different network
  // (10.1.2.3/8); Postfix refuses them for the same reason.
  for (int bit = len; bit < max_len; ++bit) {
    if (bytes[bit / 8] & (0x80 >> (bit % 8))) {
      return absl::StrCat(Quote(s), " has host bits set past the /", len, " prefix");
    }
  }
  return std::nullopt;
}

bool IsPin(absl::string_view s) {
  if (!absl::ConsumePrefix(&s, "sha256:") || s.size() != 64) return false;
  for (char c : s) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// Listener names label metrics and log lines; keep them to a safe alphabet.
bool IsName(absl::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return false;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------
// Checks by section.

// Every Duration anywhere in the config must be positive: a zero lifetime,
// timeout or retry interval is never meant. Done by reflection so a Duration
// added to the proto is covered without touching this file.
absl::Status CheckDurations(const pb::Message& msg, const std::string& path) {
  const pb::Descriptor* desc = msg.GetDescriptor();
  const pb::Reflection* refl = msg.GetReflection();
  for (int i = 0; i < desc->field_count(); ++i) {
    const pb::FieldDescriptor* field = desc->field(i);
    if (field->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    const std::string key = path.empty() ? field->name() : absl::StrCat(path, ".", field->name());
    const bool is_duration = field->message_type() == pb::Duration::descriptor();
    auto check = [&](const pb::Message& sub, const std::string& sub_key) -> absl::Status {
      if (!is_duration) return CheckDurations(sub, sub_key);
      const auto& d = static_cast<const pb::Duration&>(sub);
      if (d.seconds() < 0 || d.nanos() < 0 || (d.seconds() == 0 && d.nanos() == 0)) {
        return Invalid(sub_key, "must be a positive duration");
      }
      return absl::OkStatus();
    };
    if (field->is_repeated()) {
      for (int j = 0; j < refl->FieldSize(msg, field); ++j) {
        absl::Status s =
            check(refl->GetRepeatedMessage(msg, field, j), absl::StrCat(key, "[", j, "]"));
        if (!s.ok()) return s;
      }
    } else if (refl->HasField(msg, field)) {
      absl::Status s = check(refl->GetMessage(msg, field), key);
      if (!s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status CheckNode(const v1::Node& node) {
  if (node.name().empty()) return Invalid("node.name", "must not be empty");
  if (!IsDomain(node.hostname(), false)) {
    return Invalid("node.hostname",
                   absl::StrCat(Quote(node.hostname()),
                                " is not a host name (it is sent in the SMTP greeting)"));
  }
  if (node.data_dir().empty()) return Invalid("node.data_dir", "must not be empty");
  if (node.workers() > kMaxWorkers) {
    return Invalid("node.workers", absl::StrCat(node.workers(), " is over the limit of ",
                                                kMaxWorkers, " (use auto for one per core)"));
  }
  return absl::OkStatus();
}

absl::Status CheckListeners(const Config& config) {
  std::set<std::string> names;
  std::set<std::string> addresses;
  for (int i = 0; i < config.listeners_size(); ++i) {
    const v1::Listener& l = config.listeners(i);
    const std::string path = absl::StrCat("listeners[", i, "]");
    if (!IsName(l.name())) {
      return Invalid(
          path + ".name",
          absl::StrCat(Quote(l.name()), " is not a listener name (1-64 of A-Z a-z 0-9 - _ .)"));
    }
    if (!names.insert(l.name()).second) {
      return Invalid(path + ".name", absl::StrCat("duplicate listener name ", Quote(l.name())));
    }
    if (!IsIpPort(l.address())) {
      return Invalid(path + ".address",
                     absl::StrCat(Quote(l.address()), " is not ip:port or [ipv6]:port"));
    }
    if (!addresses.insert(l.address()).second) {
      return Invalid(path + ".address",
                     absl::StrCat(Quote(l.address()), " is used by another listener"));
    }
    if (l.auth() == v1::LISTENER_AUTH_AFTER_TLS && l.tls() == v1::LISTENER_TLS_NONE) {
      return Invalid(path + ".auth", "after_tls needs TLS, but this listener has tls: none");
    }
    // Whoever may send the PROXY header chooses the client address (and so
    // the relay decision): without this list any peer could claim to be a
    // trusted network.
    if (l.proxy_protocol() && l.proxy_protocol_from_size() == 0) {
      return Invalid(path + ".proxy_protocol_from",
                     "required when proxy_protocol is true (the load balancers' networks)");
    }
    if (!l.proxy_protocol() && l.proxy_protocol_from_size() > 0) {
      return Invalid(path + ".proxy_protocol_from", "only used with proxy_protocol: true");
    }
    for (int j = 0; j < l.proxy_protocol_from_size(); ++j) {
      if (std::optional<std::string> problem = CidrProblem(l.proxy_protocol_from(j))) {
        return Invalid(absl::StrCat(path, ".proxy_protocol_from[", j, "]"), *problem);
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckTls(const v1::Tls& tls) {
  std::set<std::string> names;
  for (int i = 0; i < tls.certificates_size(); ++i) {
    const v1::Certificate& c = tls.certificates(i);
    const std::string path = absl::StrCat("tls.certificates[", i, "]");
    if (c.name().empty()) return Invalid(path + ".name", "must not be empty");
    if (!names.insert(c.name()).second) {
      return Invalid(path + ".name", absl::StrCat("duplicate certificate name ", Quote(c.name())));
    }
    if (c.cert_file().empty()) return Invalid(path + ".cert_file", "must not be empty");
    if (c.key_file().empty()) return Invalid(path + ".key_file", "must not be empty");
  }
  return absl::OkStatus();
}

absl::Status CheckRelay(const v1::Relay& relay) {
  for (int i = 0; i < relay.accepted_domains_size(); ++i) {
    if (!IsDomain(relay.accepted_domains(i), false)) {
      return Invalid(absl::StrCat("relay.accepted_domains[", i, "]"),
                     absl::StrCat(Quote(relay.accepted_domains(i)), " is not a domain"));
    }
  }
  for (int i = 0; i < relay.trusted_networks_size(); ++i) {
    if (std::optional<std::string> problem = CidrProblem(relay.trusted_networks(i))) {
      return Invalid(absl::StrCat("relay.trusted_networks[", i, "]"), *problem);
    }
  }
  for (int i = 0; i < relay.require_tls_domains_size(); ++i) {
    if (!IsDomain(relay.require_tls_domains(i), false)) {
      return Invalid(absl::StrCat("relay.require_tls_domains[", i, "]"),
                     absl::StrCat(Quote(relay.require_tls_domains(i)), " is not a domain"));
    }
  }
  // Without a users file nobody can log in, so the rule could never apply:
  // almost certainly a forgotten users_file.
  if (relay.sender_login_match() && relay.users_file().empty()) {
    return Invalid("relay.sender_login_match", "needs relay.users_file");
  }
  return absl::OkStatus();
}

absl::Status CheckRoutes(const Config& config) {
  std::set<std::string> domains;
  for (int i = 0; i < config.routes_size(); ++i) {
    const v1::Route& r = config.routes(i);
    const std::string path = absl::StrCat("routes[", i, "]");
    if (!IsDomain(r.domain(), false)) {
      return Invalid(path + ".domain", absl::StrCat(Quote(r.domain()), " is not a domain"));
    }
    if (!domains.insert(absl::AsciiStrToLower(r.domain())).second) {
      return Invalid(path + ".domain", absl::StrCat("duplicate route for ", Quote(r.domain())));
    }
    if (!IsHostPort(r.next_hop())) {
      return Invalid(path + ".next_hop",
                     absl::StrCat(Quote(r.next_hop()), " is not host:port or [ip]:port"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckDns(const v1::Dns& dns) {
  for (int i = 0; i < dns.servers_size(); ++i) {
    if (!IsIpPort(dns.servers(i))) {
      return Invalid(absl::StrCat("dns.servers[", i, "]"),
                     absl::StrCat(Quote(dns.servers(i)), " is not ip:port or [ipv6]:port"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckDelivery(const v1::Delivery& delivery) {
  if (delivery.smtp_port() == 0 || delivery.smtp_port() > 65535) {
    return Invalid("delivery.smtp_port",
                   absl::StrCat(delivery.smtp_port(), " is not a port (1-65535)"));
  }
  return absl::OkStatus();
}

absl::Status CheckPins(const pb::RepeatedPtrField<std::string>& pins, const std::string& path) {
  for (int i = 0; i < pins.size(); ++i) {
    if (!IsPin(pins[i])) {
      return Invalid(absl::StrCat(path, "[", i, "]"),
                     absl::StrCat(Quote(pins[i]), " is not sha256:<64 hex digits>"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckPartners(const Config& config) {
  std::set<std::string> domains;
  for (int i = 0; i < config.partners_size(); ++i) {
    const v1::Partner& p = config.partners(i);
    const std::string path = absl::StrCat("partners[", i, "]");
    if (!IsDomain(p.domain(), /*allow_leading_dot=*/true)) {
      return Invalid(path + ".domain",
                     absl::StrCat(Quote(p.domain()),
                                  " is not a domain (or .domain for it and its subdomains)"));
    }
    if (!domains.insert(absl::AsciiStrToLower(p.domain())).second) {
      return Invalid(path + ".domain", absl::StrCat("duplicate partner ", Quote(p.domain())));
    }
    const v1::OutboundPolicy& out = p.outbound();
    for (int j = 0; j < out.match_size(); ++j) {
      if (!IsDomain(out.match(j), /*allow_leading_dot=*/true)) {
        return Invalid(absl::StrCat(path, ".outbound.match[", j, "]"),
                       absl::StrCat(Quote(out.match(j)), " is not a host name"));
      }
    }
    if (absl::Status s = CheckPins(out.pins(), path + ".outbound.pins"); !s.ok()) return s;
    if (out.tls() == v1::OUTBOUND_TLS_MODE_PIN && out.pins_size() == 0) {
      return Invalid(path + ".outbound.pins", "tls: pin needs at least one pin");
    }
    if (out.tls() != v1::OUTBOUND_TLS_MODE_PIN && out.pins_size() > 0) {
      return Invalid(path + ".outbound.pins",
                     "pins are only checked with tls: pin; set tls: pin or remove them");
    }
    if (absl::Status s = CheckPins(p.inbound().pins(), path + ".inbound.pins"); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status CheckLimits(const v1::Limits& limits) {
  if (limits.max_message_size() == 0) return Invalid("limits.max_message_size", "must be > 0");
  if (limits.max_recipients() == 0) return Invalid("limits.max_recipients", "must be > 0");
  if (limits.max_connections_per_ip() == 0) {
    return Invalid("limits.max_connections_per_ip", "must be > 0");
  }
  if (limits.max_connections() == 0) return Invalid("limits.max_connections", "must be > 0");
  return absl::OkStatus();
}

absl::Status CheckControl(const Config& config) {
  const v1::Control& c = config.control();
  if (c.admin_socket().empty()) return Invalid("control.admin_socket", "must not be empty");
  if (c.admin_socket().size() > kMaxUnixSocketPath) {
    return Invalid("control.admin_socket",
                   absl::StrCat("path is ", c.admin_socket().size(),
                                " bytes; a unix socket path must be at most ", kMaxUnixSocketPath));
  }
  if (!c.grpc_listen().empty() && !IsIpPort(c.grpc_listen())) {
    return Invalid("control.grpc_listen",
                   absl::StrCat(Quote(c.grpc_listen()), " is not ip:port or [ipv6]:port"));
  }
  if (!IsIpPort(c.metrics_listen())) {
    return Invalid("control.metrics_listen",
                   absl::StrCat(Quote(c.metrics_listen()), " is not ip:port or [ipv6]:port"));
  }
  const std::string& primary = config.cluster().primary();
  if (!primary.empty() && !IsHostPort(primary)) {
    return Invalid("cluster.primary",
                   absl::StrCat(Quote(primary), " is not host:port or [ip]:port"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string_view DefaultConfigYaml() { return kDefaultConfigYaml; }

void ApplyDefaults(Config* config) {
  v1::Node* node = config->mutable_node();
  if (node->name().empty()) node->set_name(HostName());
  if (node->data_dir().empty()) node->set_data_dir(kDefaultDataDir);
  if (node->hostname().empty()) node->set_hostname(node->name());
  if (!node->has_drain_timeout()) {
    node->mutable_drain_timeout()->set_seconds(30);
  }

  for (v1::Listener& l : *config->mutable_listeners()) {
    if (l.tls() == v1::LISTENER_TLS_UNSPECIFIED) l.set_tls(v1::LISTENER_TLS_OFFER);
    if (l.auth() == v1::LISTENER_AUTH_UNSPECIFIED) l.set_auth(v1::LISTENER_AUTH_NONE);
  }

  v1::Tls* tls = config->mutable_tls();
  if (tls->min_version() == v1::TLS_VERSION_UNSPECIFIED) tls->set_min_version(v1::TLS_VERSION_1_2);
  if (tls->ciphers() == v1::CIPHER_CLASS_UNSPECIFIED) tls->set_ciphers(v1::CIPHER_CLASS_PFS);

  v1::Delivery* delivery = config->mutable_delivery();
  if (delivery->smtp_port() == 0) delivery->set_smtp_port(25);
  if (!delivery->has_max_queue_lifetime()) {
    delivery->mutable_max_queue_lifetime()->set_seconds(120 * 3600);
  }
  if (!delivery->has_tls_failure_max_defer()) {
    delivery->mutable_tls_failure_max_defer()->set_seconds(24 * 3600);
  }
  if (delivery->retry_schedule_size() == 0) {
    for (int64_t minutes : {1, 5, 15, 30, 60}) {
      delivery->add_retry_schedule()->set_seconds(minutes * 60);
    }
  }
  if (delivery->destination_concurrency() == 0) delivery->set_destination_concurrency(20);
  if (delivery->max_outbound_connections() == 0) delivery->set_max_outbound_connections(500);
  if (delivery->default_tls() == v1::OUTBOUND_TLS_MODE_UNSPECIFIED) {
    delivery->set_default_tls(v1::OUTBOUND_TLS_MODE_OPPORTUNISTIC);
  }

  for (v1::Partner& p : *config->mutable_partners()) {
    v1::OutboundPolicy* out = p.mutable_outbound();
    if (out->tls() == v1::OUTBOUND_TLS_MODE_UNSPECIFIED) out->set_tls(delivery->default_tls());
    if (out->min_version() == v1::TLS_VERSION_UNSPECIFIED) out->set_min_version(tls->min_version());
    if (out->ciphers() == v1::CIPHER_CLASS_UNSPECIFIED) out->set_ciphers(tls->ciphers());
  }

  v1::Limits* limits = config->mutable_limits();
  if (limits->max_message_size() == 0) limits->set_max_message_size(kDefaultMaxMessageSize);
  if (limits->max_recipients() == 0) limits->set_max_recipients(1000);
  if (limits->max_connections_per_ip() == 0) limits->set_max_connections_per_ip(100);
  if (!limits->has_command_timeout()) {
    limits->mutable_command_timeout()->set_seconds(5 * 60);
  }
  if (limits->max_connections() == 0) limits->set_max_connections(10000);
  if (!limits->has_data_timeout()) limits->mutable_data_timeout()->set_seconds(10 * 60);

  v1::Control* control = config->mutable_control();
  if (control->admin_socket().empty()) {
    absl::string_view dir = node->data_dir();
    while (dir.size() > 1 && dir.back() == '/') dir.remove_suffix(1);
    control->set_admin_socket(absl::StrCat(dir, dir == "/" ? "" : "/", "admin.sock"));
  }
  if (control->metrics_listen().empty()) control->set_metrics_listen(kDefaultMetricsListen);
}

absl::Status ValidateConfig(const Config& config) {
  // Sections in file order, so the first problem reported is the first one in
  // a config file written in the schema's order (proto/config.proto).
  using Check = absl::Status (*)(const Config&);
  constexpr Check kChecks[] = {
      [](const Config& c) { return CheckNode(c.node()); },
      CheckListeners,
      [](const Config& c) { return CheckTls(c.tls()); },
      [](const Config& c) { return CheckRelay(c.relay()); },
      CheckRoutes,
      [](const Config& c) { return CheckDns(c.dns()); },
      [](const Config& c) { return CheckDelivery(c.delivery()); },
      CheckPartners,
      [](const Config& c) { return CheckLimits(c.limits()); },
      CheckControl,
      [](const Config& c) { return CheckDurations(c, ""); },
  };
  for (Check check : kChecks) {
    if (absl::Status s = check(config); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ValidateNodeConfig(const Config& config) {
  if (config.listeners_size() == 0) {
    return Invalid("listeners", "none configured; a node needs at least one SMTP listener");
  }
  return absl::OkStatus();
}

}  // namespace postern::control
