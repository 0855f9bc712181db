// The effective configuration of a node: its config file plus the policy in
// its policy store (docs/DESIGN.md "Policy: file + store"). For now the store
// holds partners only, one key per domain:
//
//   /policy/partners/<domain, lower case>  ->  config.v1.Partner (binary)
//
// stored as the admin wrote it (no defaults), so the file's defaults
// (delivery.default_tls, tls.*) apply when it is merged. A domain the file
// defines belongs to the file: a store partner with that domain is
// "shadowed" and left out of the merge (the API refuses to write one; it
// can only arise when the file gains the domain later).
//
// Thread-safety: all functions are reentrant.
#ifndef POSTERN_CONTROL_EFFECTIVE_CONFIG_H_
#define POSTERN_CONTROL_EFFECTIVE_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "control/policy_store/policy_store.h"
#include "proto/config.pb.h"

namespace postern::control {

inline constexpr char kPartnerPrefix[] = "/policy/partners/";

// The store key of a partner domain (lower-cased; ".x" stays ".x").
std::string PartnerKey(std::string_view domain);

// Whether the file config defines a partner for `domain` (case-insensitive).
bool FileDefinesPartner(const config::v1::Config& file, std::string_view domain);

struct StorePartner {
  config::v1::Partner partner;
  int64_t mod_revision = 0;
};

struct StorePartners {
  int64_t revision = 0;                // the store revision read
  std::vector<StorePartner> partners;  // in key order
};

// The store's partners at `revision` (0: the current one). kDataLoss for a
// value that does not parse; the store's errors as they are.
absl::StatusOr<StorePartners> ReadStorePartners(PolicyStore& store, int64_t revision = 0);

// file + store: a copy of `file` with every store partner whose domain the
// file does not define appended (in the given order), then ApplyDefaults,
// ValidateConfig and ValidateNodeConfig. The domains left out go to
// `shadowed` if not null. InvalidArgument "<field path>: <problem>" as
// ValidateConfig words it, the path indexing the merged partners list.
absl::StatusOr<config::v1::Config> MergeConfig(const config::v1::Config& file,
                                               const std::vector<config::v1::Partner>& store,
                                               std::vector<std::string>* shadowed = nullptr);

}  // namespace postern::control

#endif  // POSTERN_CONTROL_EFFECTIVE_CONFIG_H_
