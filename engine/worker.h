// Worker: one shard of a Postern node. Owns the io_uring loop, its listening
// sockets (SO_REUSEPORT, one per configured listener), every connection
// accepted on them, the shard's spool (RocksDB + group-commit writer thread),
// and the IPC channel to posternd.
//
// Threading: everything here runs on the loop thread, except the spool
// writer's own thread, which talks back only through its eventfd.
#ifndef POSTERN_ENGINE_WORKER_H_
#define POSTERN_ENGINE_WORKER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/status/status.h"
#include "common/ipc_framing.h"
#include "common/metric_region.h"
#include "engine/auth_throttle.h"
#include "engine/auth_verifier.h"
#include "engine/connection_limiter.h"
#include "engine/inbound_policy.h"
#include "engine/io_ring.h"
#include "engine/outbound_transport.h"
#include "engine/relay_policy.h"
#include "engine/smtp_connection.h"
#include "engine/tls_context.h"
#include "engine/user_db.h"
#include "proto/worker_ipc.pb.h"
#include "queue/queue_id.h"
#include "queue/queue_manager.h"
#include "queue/spool_store.h"
#include "queue/spool_writer.h"

namespace postern::engine {

class Worker {
 public:
  // ipc_fd: the socketpair end to posternd (owned). metrics: this shard's
  // shared-memory counters.
  Worker(int ipc_fd, std::unique_ptr<metrics::MetricRegion> metrics);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Applies the first setup: opens the spool and the listeners. An error
  // means the worker cannot serve (e.g. the address is in use).
  absl::Status Init(const ipc::v1::WorkerSetup& setup);

  // Runs the loop until drained. Returns the loop's failure, if any.
  absl::Status Run();

  // --- called by SmtpConnection ---
  // Admission once the client's address is known: per-worker cap, and
  // per-address concurrency and rate limits (trusted networks exempt).
  bool Admit(SmtpConnection* conn);
  SessionContext MakeSessionContext(size_t listener_index, const std::string& client_ip,
                                    uint16_t client_port) const;
  std::string NextQueueId();
  void Spool(SmtpConnection* conn, const std::string& queue_id, AcceptedMessage msg);
  void ConnectionClosing(SmtpConnection* conn);
  void CountReceived(size_t listener, uint64_t bytes);
  void CountRejection(const std::string& reason);
  // failure empty: a successful handshake at `version`; else the library's
  // failure reason (mapped to a bounded label set).
  void CountTlsHandshake(size_t listener, const std::string& version, const std::string& cipher,
                         const std::string& failure);
  void CountStartTlsDiscarded(size_t listener, uint64_t bytes);
  void CountCommands(const std::array<uint64_t, kCommandVerbCount>& counts);
  // Verifies credentials off the loop; answers conn->AuthDone() later.
  void CheckAuth(SmtpConnection* conn, AuthRequest request);
  // The current listener TLS context; nullptr if none could be built.
  TlsServerContext* tls_context() const { return tls_.get(); }
  int64_t NowMs() const;
  int64_t GreetDelayMs() const;

 private:
  struct Listener;
  class AcceptOp;
  class TickOp;
  class SpoolEventOp;
  class IpcOp;
  class AuthEventOp;
  class QueueEvents;
  class OutboundEvents;

  absl::Status ApplyConfig(const ipc::v1::WorkerSetup& setup, bool first);
  // The outbound settings of `c`, checked: an error refuses the config.
  struct OutboundSetup {
    OutboundOptions options;
    OutboundPolicy policy;
    RouteTable routes;
  };
  static absl::StatusOr<OutboundSetup> BuildOutbound(const config::v1::Config& c);
  void OnAccept(Listener* l, int res, uint32_t flags);
  void OnTick();
  void OnSpoolEvent(int res);
  void OnAuthEvent(int res);
  void RunDeferred();
  void OnIpc(int res, uint32_t flags);
  void HandleIpcMessage(const ipc::v1::SupervisorToWorker& msg);
  void StartDrain(int64_t deadline_ms);
  void SendToSupervisor(const ipc::v1::WorkerToSupervisor& msg);
  void ReapConnections();
  void UpdateQueueGauges();
  // Merges the spools of shards left without a worker into this one.
  void AdoptShards(const ipc::v1::WorkerSetup& setup);

  int ipc_fd_;
  std::unique_ptr<metrics::MetricRegion> metrics_;
  IoRing ring_;
  uint32_t shard_ = 0;
  uint64_t config_version_ = 0;
  config::v1::Config config_;
  // Policy objects sessions borrow. A reload installs new ones; the old stay
  // alive (retired) because open sessions still point at them.
  std::unique_ptr<RelayPolicy> relay_;
  std::unique_ptr<InboundPolicy> inbound_;
  std::unique_ptr<TlsServerContext> tls_;
  std::vector<std::unique_ptr<RelayPolicy>> retired_relays_;
  std::vector<std::unique_ptr<InboundPolicy>> retired_inbound_;
  std::vector<std::unique_ptr<TlsServerContext>> retired_tls_;
  std::string ticket_key_;
  std::shared_ptr<const UserDb> users_;
  std::unique_ptr<AuthVerifier> verifier_;
  std::unique_ptr<AuthEventOp> auth_event_;
  AuthThrottle auth_throttle_;
  // Answers produced while dispatching (throttled AUTH) are delivered after
  // the current completion, never re-entering the connection that asked.
  std::vector<std::pair<uint64_t, AuthOutcome>> deferred_auth_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::unordered_map<uint64_t, std::unique_ptr<SmtpConnection>> connections_;
  std::vector<uint64_t> closing_ids_;
  std::unique_ptr<ConnectionLimiter> limiter_;
  // Connections admitted through the limiter (to Release on close).
  std::unordered_set<uint64_t> limited_;
  uint64_t next_connection_id_ = 1;
  std::unique_ptr<queue::SpoolStore> store_;
  std::unique_ptr<queue::SpoolWriter> writer_;
  std::unique_ptr<queue::QueueIdGenerator> ids_;
  // The queue runner and the SMTP client side it delivers through.
  std::unique_ptr<QueueEvents> queue_events_;
  std::unique_ptr<OutboundEvents> outbound_events_;
  std::unique_ptr<OutboundTransport> transport_;
  std::unique_ptr<queue::QueueManager> queue_;
  std::unique_ptr<TickOp> tick_;
  std::unique_ptr<SpoolEventOp> spool_event_;
  std::unique_ptr<IpcOp> ipc_op_;
  ipc::FrameReader ipc_reader_;
  bool draining_ = false;
  int64_t drain_deadline_ms_ = 0;
  bool done_ = false;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_WORKER_H_
