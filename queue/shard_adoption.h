// Shard adoption: when a node restarts with fewer workers, the spool
// directories left without a worker are merged into the remaining shards
// (shard k goes to k mod N), so no message is stranded.
//
// Crash safety: messages are copied in batches (one synced write each),
// then removed from the old spool. A crash in between leaves a message in
// both; the copy is skipped when the message is already in `into`, so
// nothing is delivered twice and nothing is lost. Queue ids carry their
// original shard, so they cannot collide.
//
// Threading: runs at worker start, before the spool writer exists; blocks
// on disk I/O.
#ifndef POSTERN_QUEUE_SHARD_ADOPTION_H_
#define POSTERN_QUEUE_SHARD_ADOPTION_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "queue/spool_store.h"

namespace postern::queue {

// Moves every message of the spool at `dir` into `into`; returns how many
// were moved. A directory without a spool moves nothing. A message whose
// body cannot be read is left where it is.
absl::StatusOr<int64_t> AdoptShardSpool(SpoolStore* into, const std::string& dir);

}  // namespace postern::queue

#endif  // POSTERN_QUEUE_SHARD_ADOPTION_H_
