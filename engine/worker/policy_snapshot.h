// PolicySnapshot: one configuration version, with every object the data
// plane decides with built from it: the inbound policy set (relay, partner
// rules, TLS context, users, listener settings), the outbound options,
// partner TLS policy and routes, the retry schedule. Built all at once, or
// not at all: a configuration that fails anywhere is refused as a whole and
// the worker keeps the snapshot it has (the reply to posternd names the
// reason).
//
// Ownership: shared and immutable. The worker holds the current snapshot;
// new sessions and new delivery attempts take their policy from it; each
// inbound session keeps the InboundPolicySet it started with, so an old set
// is freed when its last session ends.
//
// Threading: built and used on the loop thread.
#ifndef POSTERN_ENGINE_WORKER_POLICY_SNAPSHOT_H_
#define POSTERN_ENGINE_WORKER_POLICY_SNAPSHOT_H_

#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/inbound/inbound_policy_set.h"
#include "engine/inbound/inbound_server.h"
#include "engine/outbound/next_hop.h"
#include "engine/outbound/outbound_connection.h"
#include "engine/outbound/outbound_policy.h"
#include "proto/config.pb.h"
#include "queue/retry_schedule.h"

namespace postern::engine {

class PolicySnapshot {
 public:
  // `config` has its defaults applied (posternd validated it). `ticket_key`:
  // session-ticket key material ("" = the TLS library's own keys).
  static absl::StatusOr<std::shared_ptr<const PolicySnapshot>> Build(
      const config::v1::Config& config, uint64_t version, std::string_view ticket_key);

  uint64_t version() const { return version_; }
  const config::v1::Config& config() const { return config_; }
  const std::shared_ptr<const InboundPolicySet>& inbound() const { return inbound_; }
  const InboundServerLimits& inbound_limits() const { return inbound_limits_; }
  const OutboundOptions& outbound_options() const { return outbound_options_; }
  const OutboundPolicy& outbound_policy() const { return outbound_policy_; }
  const RouteTable& routes() const { return routes_; }
  const queue::RetrySchedule& retry_schedule() const { return retry_schedule_; }
  // delivery.hold: nothing is attempted.
  bool hold() const { return config_.delivery().hold(); }

 private:
  PolicySnapshot(config::v1::Config config, uint64_t version, queue::RetrySchedule schedule)
      : config_(std::move(config)), version_(version), retry_schedule_(std::move(schedule)) {}

  config::v1::Config config_;
  uint64_t version_;
  std::shared_ptr<const InboundPolicySet> inbound_;
  InboundServerLimits inbound_limits_;
  OutboundOptions outbound_options_;
  OutboundPolicy outbound_policy_;
  RouteTable routes_;
  queue::RetrySchedule retry_schedule_;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_WORKER_POLICY_SNAPSHOT_H_
