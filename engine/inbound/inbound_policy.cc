#include "engine/inbound/inbound_policy.h"

#include <algorithm>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/absl_compat.h"

namespace postern::engine {
namespace {

constexpr std::string_view kPinPrefix = "sha256:";

bool IsPin(std::string_view pin) {
  if (pin.substr(0, kPinPrefix.size()) != kPinPrefix) return false;
  const std::string_view hex = pin.substr(kPinPrefix.size());
  return hex.size() == 64 && std::all_of(hex.begin(), hex.end(), absl::ascii_isxdigit);
}

}  // namespace

bool DomainMatches(std::string_view pattern, std::string_view domain) {
  if (domain.empty() || pattern.empty()) return false;
  if (pattern.front() != '.') return absl::EqualsIgnoreCase(Absl(pattern), Absl(domain));
  // ".x.example": x.example itself, or anything with a non-empty label before.
  return absl::EqualsIgnoreCase(Absl(pattern.substr(1)), Absl(domain)) ||
         (domain.size() > pattern.size() && absl::EndsWithIgnoreCase(Absl(domain), Absl(pattern)));
}

bool PartnerRule::AcceptsCertificate(std::string_view cert_sha256_hex,
                                     std::string_view spki_sha256_hex) const {
  for (const std::string& pin : pins) {
    const absl::string_view hex = absl::string_view(pin).substr(kPinPrefix.size());
    if (!cert_sha256_hex.empty() && absl::EqualsIgnoreCase(hex, Absl(cert_sha256_hex))) {
      return true;
    }
    if (!spki_sha256_hex.empty() && absl::EqualsIgnoreCase(hex, Absl(spki_sha256_hex))) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<InboundPolicy> InboundPolicy::Create(std::vector<PartnerRule> partners,
                                                    std::vector<std::string> require_tls_domains) {
  InboundPolicy policy;
  std::set<std::string> seen;
  for (PartnerRule& rule : partners) {
    absl::AsciiStrToLower(&rule.domain);
    if (rule.domain.empty() || rule.domain == ".") {
      return absl::InvalidArgumentError("empty partner domain");
    }
    if (!seen.insert(rule.domain).second) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate partner \"", rule.domain, "\""));
    }
    for (std::string& pin : rule.pins) {
      if (!IsPin(pin)) {
        return absl::InvalidArgumentError(
            absl::StrCat("partner \"", rule.domain, "\": pin is not sha256:<64 hex digits>"));
      }
      absl::AsciiStrToLower(&pin);
    }
    if (!rule.pins.empty()) policy.wants_client_certs_ = true;
    policy.partners_.push_back(std::move(rule));
  }
  for (std::string& domain : require_tls_domains) {
    absl::AsciiStrToLower(&domain);
    if (domain.empty() || domain == ".") {
      return absl::InvalidArgumentError("empty domain in require_tls_domains");
    }
    policy.require_tls_domains_.push_back(std::move(domain));
  }
  return policy;
}

const PartnerRule* InboundPolicy::Match(std::string_view sender_domain) const {
  const PartnerRule* best = nullptr;
  for (const PartnerRule& rule : partners_) {
    if (!DomainMatches(rule.domain, sender_domain)) continue;
    if (rule.domain.front() != '.') return &rule;  // exact beats any suffix
    if (best == nullptr || rule.domain.size() > best->domain.size()) best = &rule;
  }
  return best;
}

bool InboundPolicy::RecipientRequiresTls(std::string_view recipient_domain) const {
  return std::any_of(
      require_tls_domains_.begin(), require_tls_domains_.end(),
      [&](const std::string& pattern) { return DomainMatches(pattern, recipient_domain); });
}

}  // namespace postern::engine
