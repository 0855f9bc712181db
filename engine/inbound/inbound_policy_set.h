// InboundPolicySet: everything an inbound session decides with, built once
// from one configuration version and immutable afterwards: relay rules,
// partner rules, the listener TLS context, the AUTH users, limits and the
// settings of each listener.
//
// Ownership: shared. The worker's PolicySnapshot holds the current set; each
// connection holds the set it started with, so a reload never changes the
// rules under an open session, and an old set is freed when its last session
// ends. Sessions borrow the RelayPolicy and InboundPolicy inside it
// (SessionContext), which the connection's reference keeps alive.
//
// The TLS context is the one mutable part: its session-ticket keys rotate in
// place (RotateTicketKeys), which changes no policy.
//
// Threading: built and used on the loop thread.
#ifndef POSTERN_ENGINE_INBOUND_INBOUND_POLICY_SET_H_
#define POSTERN_ENGINE_INBOUND_INBOUND_POLICY_SET_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/inbound/inbound_policy.h"
#include "engine/inbound/network_list.h"
#include "engine/inbound/relay_policy.h"
#include "engine/inbound/smtp_server_session.h"
#include "engine/inbound/user_db.h"
#include "engine/tls/tls_server_context.h"
#include "proto/config.pb.h"

namespace postern::engine {

// What a listener asks of its connections.
struct ListenerSettings {
  std::string name;
  SessionContext::TlsMode tls_mode = SessionContext::TlsMode::kNone;
  bool auth_enabled = false;
  bool proxy_protocol = false;  // a PROXY v1/v2 header comes first
  // With proxy_protocol: the TCP peers (load balancers) that may send the
  // header; any other peer is refused before a byte is read. Empty refuses
  // every peer.
  NetworkList proxy_from;
  bool implicit_tls() const { return tls_mode == SessionContext::TlsMode::kImplicit; }
};

class InboundPolicySet {
 public:
  // Builds every part from `config` (defaults applied) or fails naming the
  // first part that cannot be built; nothing is half-built. `ticket_key`:
  // session-ticket key material for the TLS context ("" = the library's own).
  static absl::StatusOr<std::shared_ptr<const InboundPolicySet>> FromConfig(
      const config::v1::Config& config, std::string_view ticket_key);

  // The facts of a new session on listener `index`, borrowing this set's
  // policies (the caller keeps the set alive as long as the session).
  SessionContext MakeSessionContext(size_t index, const std::string& client_ip,
                                    uint16_t client_port) const;

  size_t listener_count() const { return listeners_.size(); }
  const ListenerSettings& listener(size_t index) const { return listeners_[index]; }
  // nullptr when no listener uses TLS or no certificate could be loaded.
  TlsServerContext* tls() const { return tls_.get(); }
  const RelayPolicy& relay() const { return relay_; }
  const InboundPolicy& inbound() const { return inbound_; }
  // nullptr when no users file is configured.
  const std::shared_ptr<const UserDb>& users() const { return users_; }
  int64_t greet_delay_ms() const { return greet_delay_ms_; }
  int64_t command_timeout_ms() const { return command_timeout_ms_; }
  int64_t data_timeout_ms() const { return data_timeout_ms_; }

 private:
  InboundPolicySet(RelayPolicy relay, InboundPolicy inbound)
      : relay_(std::move(relay)), inbound_(std::move(inbound)) {}

  RelayPolicy relay_;
  InboundPolicy inbound_;
  std::shared_ptr<TlsServerContext> tls_;
  std::shared_ptr<const UserDb> users_;
  std::vector<ListenerSettings> listeners_;
  std::string hostname_;
  SessionLimits limits_;
  bool sender_login_match_ = false;
  int64_t greet_delay_ms_ = 0;
  int64_t command_timeout_ms_ = 0;
  int64_t data_timeout_ms_ = 0;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_INBOUND_INBOUND_POLICY_SET_H_
