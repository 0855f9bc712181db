#include "control/policy_store/policy_store.h"

#include "absl/strings/match.h"
#include "common/absl_compat.h"

namespace postern::control {

bool KeySelector::Matches(std::string_view k) const {
  return prefix ? absl::StartsWith(Absl(k), key) : k == key;
}

absl::Status TxnResult::ToStatus() const {
  if (succeeded) return absl::OkStatus();
  return absl::AbortedError(conflict.empty() ? "policy store: a compare failed" : conflict);
}

absl::StatusOr<v1::KeyValue> PolicyStore::Get(const std::string& key) {
  absl::StatusOr<RangeResult> result = Range({KeySelector::Key(key), 0, 1});
  if (!result.ok()) return result.status();
  if (result->kvs.empty()) return absl::NotFoundError("policy store: no such key");
  return std::move(result->kvs.front());
}

bool IsCompacted(const absl::Status& status) { return absl::IsOutOfRange(status); }

}  // namespace postern::control
