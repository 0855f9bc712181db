#include "engine/inbound/relay_policy.h"

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

absl::StatusOr<RelayPolicy> RelayPolicy::Create(const std::vector<std::string>& accepted_domains,
                                                const std::vector<std::string>& trusted_networks) {
  RelayPolicy policy;
  for (const std::string& domain : accepted_domains) {
    std::string lower = absl::AsciiStrToLower(domain);
    if (lower.empty() || lower == ".") {
      return absl::InvalidArgumentError(absl::StrCat("empty accepted domain \"", domain, "\""));
    }
    if (lower.front() == '.') {
      policy.exact_domains_.push_back(lower.substr(1));
      policy.domain_suffixes_.push_back(std::move(lower));
    } else {
      policy.exact_domains_.push_back(std::move(lower));
    }
  }
  auto networks = NetworkList::Create(trusted_networks, "trusted network");
  if (!networks.ok()) return networks.status();
  policy.trusted_ = std::move(*networks);
  return policy;
}

bool RelayPolicy::IsTrusted(std::string_view client_ip) const {
  return trusted_.Contains(client_ip);
}

bool RelayPolicy::IsAcceptedDomain(std::string_view domain) const {
  if (domain.empty()) return false;
  for (const std::string& exact : exact_domains_) {
    if (absl::EqualsIgnoreCase(Absl(domain), exact)) return true;
  }
  for (const std::string& suffix : domain_suffixes_) {
    // The label before the suffix must be non-empty: ".example.com" is not a
    // subdomain of anything.
    if (domain.size() > suffix.size() && absl::EndsWithIgnoreCase(Absl(domain), suffix))
      return true;
  }
  return false;
}

bool RelayPolicy::MayRelay(std::string_view client_ip, std::string_view recipient_domain,
                           bool authenticated) const {
  return authenticated || IsTrusted(client_ip) || IsAcceptedDomain(recipient_domain);
}

}  // namespace postern::engine
