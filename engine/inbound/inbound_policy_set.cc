#include "engine/inbound/inbound_policy_set.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"

namespace postern::engine {
namespace {

bool ListenersUseTls(const config::v1::Config& c) {
  for (const auto& l : c.listeners()) {
    if (l.tls() != config::v1::LISTENER_TLS_NONE) return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<TlsServerContext>> BuildTls(const config::v1::Config& c,
                                                           bool client_certs) {
  TlsServerOptions options;
  for (const auto& cert : c.tls().certificates()) {
    options.certificates.push_back(CertKeyPair{cert.cert_file(), cert.key_file()});
  }
  options.min_version = c.tls().min_version() == config::v1::TLS_VERSION_1_3 ? TlsVersion::kTls13
                                                                             : TlsVersion::kTls12;
  switch (c.tls().ciphers()) {
    case config::v1::CIPHER_CLASS_STRONG:
      options.ciphers = CipherClass::kStrong;
      break;
    case config::v1::CIPHER_CLASS_COMPAT:
      options.ciphers = CipherClass::kCompat;
      break;
    default:
      options.ciphers = CipherClass::kPfs;
  }
  options.request_client_cert = client_certs;
  return TlsServerContext::Create(options);
}

SessionContext::TlsMode ListenerTlsMode(config::v1::ListenerTls tls) {
  switch (tls) {
    case config::v1::LISTENER_TLS_OFFER:
      return SessionContext::TlsMode::kOffer;
    case config::v1::LISTENER_TLS_REQUIRE:
      return SessionContext::TlsMode::kRequire;
    case config::v1::LISTENER_TLS_IMPLICIT:
      return SessionContext::TlsMode::kImplicit;
    default:
      return SessionContext::TlsMode::kNone;
  }
}

}  // namespace

absl::StatusOr<std::shared_ptr<const InboundPolicySet>> InboundPolicySet::FromConfig(
    const config::v1::Config& c, std::string_view ticket_key) {
  std::vector<std::string> domains(c.relay().accepted_domains().begin(),
                                   c.relay().accepted_domains().end());
  std::vector<std::string> networks(c.relay().trusted_networks().begin(),
                                    c.relay().trusted_networks().end());
  auto relay = RelayPolicy::Create(domains, networks);
  if (!relay.ok()) return relay.status();

  std::vector<PartnerRule> partners;
  for (const auto& p : c.partners()) {
    PartnerRule rule;
    rule.domain = p.domain();
    rule.require_tls = p.inbound().require_tls();
    rule.pins.assign(p.inbound().pins().begin(), p.inbound().pins().end());
    partners.push_back(std::move(rule));
  }
  auto inbound = InboundPolicy::Create(
      std::move(partners), std::vector<std::string>(c.relay().require_tls_domains().begin(),
                                                    c.relay().require_tls_domains().end()));
  if (!inbound.ok()) return inbound.status();

  std::shared_ptr<InboundPolicySet> set(
      new InboundPolicySet(std::move(*relay), std::move(*inbound)));
  if (ListenersUseTls(c)) {
    auto built = BuildTls(c, set->inbound_.wants_client_certs());
    if (!built.ok()) return built.status();
    if (!ticket_key.empty()) {
      if (absl::Status st = (*built)->RotateTicketKeys(std::string(ticket_key)); !st.ok()) {
        return st;
      }
    }
    set->tls_ = std::move(*built);
  }
  if (!c.relay().users_file().empty()) {
    auto db = UserDb::Load(c.relay().users_file());
    if (!db.ok()) return db.status();
    set->users_ = std::move(*db);
  }
  for (const config::v1::Listener& l : c.listeners()) {
    ListenerSettings s;
    s.name = l.name();
    s.tls_mode = ListenerTlsMode(l.tls());
    s.auth_enabled = l.auth() == config::v1::LISTENER_AUTH_AFTER_TLS;
    s.proxy_protocol = l.proxy_protocol();
    auto proxy_from = NetworkList::Create(
        std::vector<std::string>(l.proxy_protocol_from().begin(), l.proxy_protocol_from().end()),
        "proxy_protocol_from network");
    if (!proxy_from.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("listener ", l.name(), ": ", proxy_from.status().message()));
    }
    s.proxy_from = std::move(*proxy_from);
    set->listeners_.push_back(std::move(s));
  }
  set->hostname_ = c.node().hostname();
  set->limits_.max_message_size = c.limits().max_message_size();
  set->limits_.max_recipients = c.limits().max_recipients();
  set->sender_login_match_ = c.relay().sender_login_match();
  set->greet_delay_ms_ = DurationMs(c.limits().greet_delay());
  set->command_timeout_ms_ = DurationMs(c.limits().command_timeout());
  set->data_timeout_ms_ = DurationMs(c.limits().data_timeout());
  return std::shared_ptr<const InboundPolicySet>(std::move(set));
}

SessionContext InboundPolicySet::MakeSessionContext(size_t index, const std::string& client_ip,
                                                    uint16_t client_port) const {
  const ListenerSettings& l = listeners_[index];
  SessionContext ctx;
  ctx.hostname = hostname_;
  ctx.listener = l.name;
  ctx.client_ip = client_ip;
  ctx.client_port = client_port;
  ctx.relay = &relay_;
  ctx.limits = limits_;
  ctx.tls_mode = l.tls_mode;
  ctx.auth_enabled = l.auth_enabled;
  ctx.sender_login_match = sender_login_match_;
  ctx.inbound = &inbound_;
  return ctx;
}

}  // namespace postern::engine
