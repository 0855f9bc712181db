// InboundPolicy: what the configuration demands of a client's TLS before it
// may hand mail over, keyed on the envelope (the inbound half of `partners[]`
// plus `relay.require_tls_domains`). Pure and free of protobuf: the worker
// copies the config into plain structs, so the SMTP session and its fuzzer
// link without the config schema.
//
// Rules:
//  - A partner is matched on the MAIL FROM domain. "partner.example" matches
//    that domain only; ".partner.example" matches it and every subdomain
//    ("a.b.partner.example"). An exact entry wins over a suffix entry, and a
//    longer suffix over a shorter one, so a subdomain can carry its own rule.
//    Matching is ASCII case-insensitive and otherwise literal (no
//    trailing-dot folding, no IDNA), as in RelayPolicy.
//  - require_tls: plaintext mail from that partner is refused (530 5.7.0).
//  - pins ("sha256:<64 hex>", either case): the client must present a TLS
//    client certificate whose SHA-256 over the DER certificate, or over its
//    DER SubjectPublicKeyInfo, is listed. Pins imply TLS.
//  - require_tls_domains: recipient domains (same matching) that may only be
//    reached over TLS: RCPT to them over plaintext is refused (530 5.7.0).
//
// Immutable once built; safe to share between threads and sessions by const
// pointer. It must outlive every session that borrows it.
#ifndef POSTERN_ENGINE_INBOUND_INBOUND_POLICY_H_
#define POSTERN_ENGINE_INBOUND_INBOUND_POLICY_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace postern::engine {

// One partner's inbound rule, as configured.
struct PartnerRule {
  std::string domain;  // "partner.example" or ".partner.example"
  bool require_tls = false;
  std::vector<std::string> pins;  // "sha256:<64 hex>"

  // True if either fingerprint (lowercase or uppercase hex, without the
  // "sha256:" prefix; empty when the client sent no certificate) is pinned.
  bool AcceptsCertificate(std::string_view cert_sha256_hex, std::string_view spki_sha256_hex) const;
};

// True if `domain` matches `pattern` by the rules above ("x.example" exactly,
// ".x.example" for it and its subdomains). Empty domains never match.
bool DomainMatches(std::string_view pattern, std::string_view domain);

class InboundPolicy {
 public:
  // Returns InvalidArgument for an empty or duplicate partner domain (ASCII
  // case-insensitive), a malformed pin, or an empty require_tls_domains
  // entry. control/config_defaults.cc checks the full domain syntax; this
  // only refuses what would make matching ambiguous.
  static absl::StatusOr<InboundPolicy> Create(std::vector<PartnerRule> partners,
                                              std::vector<std::string> require_tls_domains);

  // A policy with no partners and no TLS-only domains.
  InboundPolicy() = default;

  // The rule for mail from `sender_domain`, or nullptr. The pointer lives as
  // long as the policy.
  const PartnerRule* Match(std::string_view sender_domain) const;

  // True if mail to `recipient_domain` must arrive over TLS.
  bool RecipientRequiresTls(std::string_view recipient_domain) const;

  // True if some partner has pins: only then does the TLS layer ask clients
  // for a certificate (asking everyone makes some clients fail or prompt).
  bool wants_client_certs() const { return wants_client_certs_; }

 private:
  std::vector<PartnerRule> partners_;             // domains lower-cased
  std::vector<std::string> require_tls_domains_;  // lower-cased
  bool wants_client_certs_ = false;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_INBOUND_INBOUND_POLICY_H_
