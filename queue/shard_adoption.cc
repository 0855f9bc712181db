#include "queue/shard_adoption.h"

#include <filesystem>
#include <utility>
#include <vector>

namespace postern::queue {

absl::StatusOr<int64_t> AdoptShardSpool(SpoolStore* into, const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::path(dir) / "CURRENT", ec)) return 0;
  auto other = SpoolStore::Open(dir, SpoolOptions{});
  if (!other.ok()) return other.status();
  std::vector<SpoolRecord> copies;
  std::vector<SpoolMutation> removals;
  int64_t moved = 0;
  auto flush = [&]() -> absl::Status {
    if (absl::Status s = into->WriteBatch(copies); !s.ok()) return s;
    if (absl::Status s = (*other)->Apply({}, removals); !s.ok()) return s;
    moved += static_cast<int64_t>(removals.size());
    copies.clear();
    removals.clear();
    return absl::OkStatus();
  };
  absl::Status st = (*other)->ForEachEnvelope([&](const v1::Envelope& e) -> absl::Status {
    if (!into->ReadEnvelope(e.queue_id()).ok()) {
      auto body = (*other)->ReadBody(e.queue_id());
      if (!body.ok()) return absl::OkStatus();  // left there
      copies.push_back(SpoolRecord{e, std::move(*body)});
    }
    SpoolMutation m;
    m.envelope.set_queue_id(e.queue_id());
    m.remove = true;
    m.old_due_ms = SpoolStore::IsScheduled(e) ? SpoolStore::DueMs(e) : -1;
    removals.push_back(std::move(m));
    return removals.size() >= 512 ? flush() : absl::OkStatus();
  });
  if (st.ok()) st = flush();
  if (!st.ok()) return st;
  return moved;
}

}  // namespace postern::queue
