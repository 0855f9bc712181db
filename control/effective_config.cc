#include "control/effective_config.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "control/config_defaults.h"

namespace postern::control {

std::string PartnerKey(std::string_view domain) {
  return absl::StrCat(kPartnerPrefix,
                      absl::AsciiStrToLower(absl::string_view(domain.data(), domain.size())));
}

bool FileDefinesPartner(const config::v1::Config& file, std::string_view domain) {
  const absl::string_view d(domain.data(), domain.size());
  for (const auto& p : file.partners()) {
    if (absl::EqualsIgnoreCase(p.domain(), d)) return true;
  }
  return false;
}

absl::StatusOr<StorePartners> ReadStorePartners(PolicyStore& store, int64_t revision) {
  RangeRequest request;
  request.keys = KeySelector::Prefix(kPartnerPrefix);
  request.revision = revision;
  absl::StatusOr<RangeResult> range = store.Range(request);
  if (!range.ok()) return range.status();
  StorePartners out;
  out.revision = revision > 0 ? revision : range->revision;
  for (const v1::KeyValue& kv : range->kvs) {
    StorePartner p;
    if (!p.partner.ParseFromString(kv.value())) {
      return absl::DataLossError(absl::StrCat("policy store key ", kv.key(), " does not parse"));
    }
    p.mod_revision = kv.mod_revision();
    out.partners.push_back(std::move(p));
  }
  return out;
}

absl::StatusOr<config::v1::Config> MergeConfig(const config::v1::Config& file,
                                               const std::vector<config::v1::Partner>& store,
                                               std::vector<std::string>* shadowed) {
  config::v1::Config merged = file;
  for (const config::v1::Partner& p : store) {
    if (FileDefinesPartner(file, p.domain())) {
      if (shadowed != nullptr) shadowed->push_back(p.domain());
      continue;
    }
    *merged.add_partners() = p;
  }
  ApplyDefaults(&merged);
  if (absl::Status st = ValidateConfig(merged); !st.ok()) return st;
  if (absl::Status st = ValidateNodeConfig(merged); !st.ok()) return st;
  return merged;
}

}  // namespace postern::control
