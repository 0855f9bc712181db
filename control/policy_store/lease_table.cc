#include "control/policy_store/lease_table.h"

#include <algorithm>
#include <iterator>

#include "absl/strings/str_cat.h"

namespace postern::control {

void LeaseTable::Add(int64_t id, absl::Duration ttl, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  Lease& lease = leases_[id];
  lease.ttl = ttl;
  lease.deadline = deadline;
}

void LeaseTable::AddIfMissing(int64_t id, absl::Duration ttl, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = leases_.try_emplace(id);
  it->second.ttl = ttl;
  if (inserted) it->second.deadline = deadline;
}

void LeaseTable::Remove(int64_t id) {
  absl::MutexLock lock(&mu_);
  leases_.erase(id);
}

void LeaseTable::RetainOnly(const std::set<int64_t>& ids) {
  absl::MutexLock lock(&mu_);
  for (auto it = leases_.begin(); it != leases_.end();) {
    it->second.keys.clear();
    it = ids.count(it->first) != 0 ? std::next(it) : leases_.erase(it);
  }
}

bool LeaseTable::IsLive(int64_t id, absl::Time now) const {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(id);
  return it != leases_.end() && it->second.deadline > now;
}

void LeaseTable::Move(const std::string& key, int64_t from, int64_t to) {
  if (from == to) return;
  absl::MutexLock lock(&mu_);
  if (from != 0) {
    if (auto it = leases_.find(from); it != leases_.end()) it->second.keys.erase(key);
  }
  if (to != 0) {
    if (auto it = leases_.find(to); it != leases_.end()) it->second.keys.insert(key);
  }
}

absl::StatusOr<absl::Duration> LeaseTable::KeepAlive(int64_t id, absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) {
    return absl::NotFoundError(absl::StrCat("policy store: lease ", id, " not found"));
  }
  if (it->second.deadline <= now) {
    return absl::NotFoundError(absl::StrCat("policy store: lease ", id, " has expired"));
  }
  it->second.deadline = now + it->second.ttl;
  return it->second.ttl;
}

absl::StatusOr<LeaseInfo> LeaseTable::Info(int64_t id, absl::Time now) const {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) {
    return absl::NotFoundError(absl::StrCat("policy store: lease ", id, " not found"));
  }
  LeaseInfo info;
  info.id = id;
  info.ttl = it->second.ttl;
  info.remaining = std::max(absl::ZeroDuration(), it->second.deadline - now);
  info.keys.assign(it->second.keys.begin(), it->second.keys.end());
  return info;
}

std::vector<std::string> LeaseTable::Keys(int64_t id) const {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return {};
  return {it->second.keys.begin(), it->second.keys.end()};
}

std::vector<int64_t> LeaseTable::Expired(absl::Time now) const {
  absl::MutexLock lock(&mu_);
  std::vector<int64_t> ids;
  for (const auto& [id, lease] : leases_) {
    if (lease.deadline <= now) ids.push_back(id);
  }
  return ids;
}

size_t LeaseTable::size() const {
  absl::MutexLock lock(&mu_);
  return leases_.size();
}

}  // namespace postern::control
