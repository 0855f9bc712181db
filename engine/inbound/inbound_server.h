// InboundServer: the accepting side of one worker. Owns the listening
// sockets (SO_REUSEPORT, one per configured listener), every inbound
// connection, admission (per-worker cap, per-address limits), the AUTH
// plumbing (verifier thread, failed-attempt throttle), and the hand-over of
// accepted messages to the spool writer. It is the InboundHost of its
// connections.
//
// Policy: SetPolicy() installs a new InboundPolicySet for connections
// accepted from then on; open connections keep the set they started with.
//
// Spooled messages: when a message is durable the server counts and logs it,
// hands the record to `on_spooled` (the queue manager's first attempt), and
// answers the connection. A message whose connection is gone is still
// spooled; nobody is answered.
//
// Threading: the loop thread, except the verifier's and the spool writer's
// own threads, which talk back only through their eventfds. The ring, the
// writer, the id generator and the probe are borrowed and must outlive it.
#ifndef POSTERN_ENGINE_INBOUND_INBOUND_SERVER_H_
#define POSTERN_ENGINE_INBOUND_INBOUND_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/inbound/auth_throttle.h"
#include "engine/inbound/auth_verifier.h"
#include "engine/inbound/inbound_connection.h"
#include "engine/inbound/inbound_host.h"
#include "engine/inbound/inbound_policy_set.h"
#include "engine/inbound/inbound_probe.h"
#include "engine/net/connection_limiter.h"
#include "engine/net/io_ring.h"
#include "engine/net/method_op.h"
#include "proto/config.pb.h"
#include "queue/queue_id.h"
#include "queue/spool_writer.h"

namespace postern::engine {

struct InboundServerLimits {
  size_t max_connections = 0;  // per worker; refused at accept with 421
  ConnectionLimits per_address;
};

class InboundServer : public InboundHost, public queue::SpoolClient {
 public:
  using SpooledFn = std::function<void(queue::SpoolRecord record)>;

  InboundServer(IoRing* ring, InboundProbe* probe, queue::SpoolWriter* writer,
                queue::QueueIdGenerator* ids, uint32_t shard, SpooledFn on_spooled);
  ~InboundServer() override;
  InboundServer(const InboundServer&) = delete;
  InboundServer& operator=(const InboundServer&) = delete;

  // Opens a listening socket per listener of `config` and starts accepting
  // (first configuration only: listener changes need a restart). An error
  // names the listener and its address.
  absl::Status Listen(const config::v1::Config& config);
  void SetPolicy(std::shared_ptr<const InboundPolicySet> policy, InboundServerLimits limits);
  const std::shared_ptr<const InboundPolicySet>& policy() const { return policy_; }

  // Greeting delays, timeouts, limiter sweep; shuts connections down once
  // a drain deadline has passed.
  void Tick(int64_t now_ms);
  // Stops accepting (closing the listeners lets the kernel steer new
  // connections to workers still listening); open sessions continue until
  // Tick() passes `deadline_ms`.
  void StartDrain(int64_t deadline_ms);
  // Frees connections that finished closing; call once per loop turn.
  void Reap();
  // Answers throttled AUTH attempts outside the completion that asked.
  void RunDeferred();
  // Stops the verifier thread (drained).
  void StopAuth();

  size_t connection_count() const { return connections_.size(); }
  size_t listener_count() const { return listeners_.size(); }

  // InboundHost
  int64_t NowMs() const override;
  bool Admit(InboundConnection* conn) override;
  std::string NextQueueId() override;
  void Spool(InboundConnection* conn, const std::string& queue_id, AcceptedMessage msg) override;
  void CheckAuth(InboundConnection* conn, AuthRequest request) override;
  void ConnectionClosing(InboundConnection* conn) override;

  // queue::SpoolClient
  void OnSpoolCompletion(queue::SpoolCompletion completion) override;

 private:
  struct Listener {
    InboundServer* server = nullptr;
    size_t index = 0;
    std::string name;
    int fd = -1;
    bool armed = false;
    void OnAccept(int res, uint32_t flags) { server->OnAccept(this, res, flags); }
    MethodOp<Listener> op{this, &Listener::OnAccept};
  };

  void OnAccept(Listener* l, int res, uint32_t flags);
  void OnAuthEvent(int res, uint32_t flags);
  InboundConnection* Find(uint64_t id);

  IoRing* ring_;
  InboundProbe* probe_;
  queue::SpoolWriter* writer_;
  queue::QueueIdGenerator* ids_;
  uint32_t shard_;
  SpooledFn on_spooled_;
  std::shared_ptr<const InboundPolicySet> policy_;
  InboundServerLimits limits_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::unordered_map<uint64_t, std::unique_ptr<InboundConnection>> connections_;
  std::vector<uint64_t> closing_ids_;
  std::unique_ptr<ConnectionLimiter> limiter_;
  // Connections admitted through the limiter (to Release on close).
  std::unordered_set<uint64_t> limited_;
  uint64_t next_connection_id_ = 1;
  std::unique_ptr<AuthVerifier> verifier_;
  MethodOp<InboundServer> auth_event_op_{this, &InboundServer::OnAuthEvent};
  uint64_t auth_event_value_ = 0;
  bool auth_stopped_ = false;
  AuthThrottle auth_throttle_;
  // Answers produced while dispatching (throttled AUTH) are delivered after
  // the current completion, never re-entering the connection that asked.
  std::vector<std::pair<uint64_t, AuthOutcome>> deferred_auth_;
  bool draining_ = false;
  int64_t drain_deadline_ms_ = 0;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_INBOUND_INBOUND_SERVER_H_
