#include "engine/worker/policy_snapshot.h"

#include <string>
#include <utility>
#include <vector>

namespace postern::engine {

absl::StatusOr<std::shared_ptr<const PolicySnapshot>> PolicySnapshot::Build(
    const config::v1::Config& c, uint64_t version, std::string_view ticket_key) {
  std::shared_ptr<PolicySnapshot> s(
      new PolicySnapshot(c, version, queue::RetrySchedule::FromConfig(c.delivery())));

  auto inbound = InboundPolicySet::FromConfig(c, ticket_key);
  if (!inbound.ok()) return inbound.status();
  s->inbound_ = std::move(*inbound);
  s->inbound_limits_.max_connections = c.limits().max_connections();
  s->inbound_limits_.per_address.max_per_ip = static_cast<int>(c.limits().max_connections_per_ip());
  s->inbound_limits_.per_address.max_rate_per_ip =
      static_cast<int>(c.limits().max_connection_rate_per_ip());
  // The per-worker cap is enforced at accept, before any PROXY header.
  s->inbound_limits_.per_address.max_total = 0;

  s->outbound_options_.helo_name = c.node().hostname();
  s->outbound_options_.smtp_port = static_cast<uint16_t>(c.delivery().smtp_port());
  s->outbound_options_.destination_concurrency = c.delivery().destination_concurrency();
  s->outbound_options_.max_connections = c.delivery().max_outbound_connections();
  auto policy = OutboundPolicy::FromConfig(c);
  if (!policy.ok()) return policy.status();
  s->outbound_policy_ = std::move(*policy);
  std::vector<RouteConfig> routes;
  for (const auto& r : c.routes()) routes.push_back(RouteConfig{r.domain(), r.next_hop()});
  auto table = RouteTable::Create(routes, s->outbound_options_.smtp_port);
  if (!table.ok()) return table.status();
  s->routes_ = std::move(*table);
  return std::shared_ptr<const PolicySnapshot>(std::move(s));
}

}  // namespace postern::engine
