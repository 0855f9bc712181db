// OutboundPolicy: the TLS policy for mail to each destination domain, from
// the configured partners (partners[].outbound) and delivery.default_tls for
// everyone else. Modes (docs/CONFIG.md): none | opportunistic | require | verify |
// pin; require, verify and pin are "enforced": without the TLS they demand,
// nothing is sent and the recipient waits (reason tls_required).
//
// Matching: a partner "x.example" matches that domain only; ".x.example"
// matches it and every subdomain. The most specific partner wins: an exact
// match before any suffix, a longer suffix before a shorter one.
//
// Immutable once built; the worker swaps in a new one on reload.
#ifndef POSTERN_ENGINE_OUTBOUND_OUTBOUND_POLICY_H_
#define POSTERN_ENGINE_OUTBOUND_OUTBOUND_POLICY_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/config.pb.h"

namespace postern::engine {

struct DomainTlsPolicy {
  std::string partner;  // the matching partner's domain pattern; "" for the default
  config::v1::OutboundTlsMode mode = config::v1::OUTBOUND_TLS_MODE_OPPORTUNISTIC;
  config::v1::TlsVersion min_version = config::v1::TLS_VERSION_1_2;
  config::v1::CipherClass ciphers = config::v1::CIPHER_CLASS_COMPAT;
  std::vector<std::string> match;  // names the certificate must carry (verify)
  std::vector<std::string> pins;   // "sha256:<hex>" of the leaf or its SPKI (pin)
  std::string ca_file;             // "" = the system CA store
  // Deliver as opportunistic would, but evaluate `mode` and report what it
  // would have refused (MTA-STS testing, Exchange connector TestMode).
  bool testing = false;

  bool enforced() const {
    return mode == config::v1::OUTBOUND_TLS_MODE_REQUIRE ||
           mode == config::v1::OUTBOUND_TLS_MODE_VERIFY ||
           mode == config::v1::OUTBOUND_TLS_MODE_PIN;
  }
  // The mode the session actually runs: testing policies run opportunistic.
  config::v1::OutboundTlsMode effective_mode() const {
    return testing && enforced() ? config::v1::OUTBOUND_TLS_MODE_OPPORTUNISTIC : mode;
  }
};

class OutboundPolicy {
 public:
  // From a validated config (defaults applied).
  static absl::StatusOr<OutboundPolicy> FromConfig(const config::v1::Config& config);

  // The policy for mail to `domain` (lower-case ASCII).
  const DomainTlsPolicy& For(std::string_view domain) const;

 private:
  DomainTlsPolicy default_;
  std::vector<DomainTlsPolicy> partners_;
};

// "none", "opportunistic", "require", "verify", "pin" (logs).
std::string_view OutboundTlsModeName(config::v1::OutboundTlsMode mode);

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_OUTBOUND_OUTBOUND_POLICY_H_
