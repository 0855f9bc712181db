#include "engine/outbound/outbound_policy.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/inbound/inbound_policy.h"

namespace postern::engine {
namespace {

// Higher is more specific: exact matches beat suffixes, longer suffixes beat
// shorter ones. -1: no match.
int Specificity(std::string_view pattern, std::string_view domain) {
  if (!DomainMatches(pattern, domain)) return -1;
  const bool suffix = !pattern.empty() && pattern.front() == '.';
  return suffix ? static_cast<int>(pattern.size()) : 1 << 20;
}

}  // namespace

absl::StatusOr<OutboundPolicy> OutboundPolicy::FromConfig(const config::v1::Config& config) {
  OutboundPolicy policy;
  policy.default_.mode = config.delivery().default_tls();
  if (policy.default_.mode == config::v1::OUTBOUND_TLS_MODE_UNSPECIFIED) {
    policy.default_.mode = config::v1::OUTBOUND_TLS_MODE_OPPORTUNISTIC;
  }
  for (const auto& p : config.partners()) {
    if (!p.has_outbound()) continue;
    DomainTlsPolicy d;
    d.partner = absl::AsciiStrToLower(p.domain());
    if (d.partner.empty()) return absl::InvalidArgumentError("partner without a domain");
    const auto& o = p.outbound();
    d.mode = o.tls() == config::v1::OUTBOUND_TLS_MODE_UNSPECIFIED ? policy.default_.mode : o.tls();
    if (o.min_version() != config::v1::TLS_VERSION_UNSPECIFIED) d.min_version = o.min_version();
    if (o.ciphers() != config::v1::CIPHER_CLASS_UNSPECIFIED) d.ciphers = o.ciphers();
    d.match.assign(o.match().begin(), o.match().end());
    d.pins.assign(o.pins().begin(), o.pins().end());
    d.ca_file = o.ca_file();
    d.testing = o.testing();
    if (d.mode == config::v1::OUTBOUND_TLS_MODE_PIN && d.pins.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("partner ", d.partner, ": tls pin needs at least one pin"));
    }
    policy.partners_.push_back(std::move(d));
  }
  return policy;
}

const DomainTlsPolicy& OutboundPolicy::For(std::string_view domain) const {
  const DomainTlsPolicy* best = &default_;
  int best_score = -1;
  for (const DomainTlsPolicy& p : partners_) {
    const int score = Specificity(p.partner, domain);
    if (score > best_score) {
      best = &p;
      best_score = score;
    }
  }
  return *best;
}

std::string_view OutboundTlsModeName(config::v1::OutboundTlsMode mode) {
  switch (mode) {
    case config::v1::OUTBOUND_TLS_MODE_NONE:
      return "none";
    case config::v1::OUTBOUND_TLS_MODE_REQUIRE:
      return "require";
    case config::v1::OUTBOUND_TLS_MODE_VERIFY:
      return "verify";
    case config::v1::OUTBOUND_TLS_MODE_PIN:
      return "pin";
    default:
      return "opportunistic";
  }
}

}  // namespace postern::engine
