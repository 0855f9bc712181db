// Worker: one shard of a Postern node. It runs the io_uring loop and talks
// to posternd; the work itself belongs to the parts it wires together:
//   - InboundServer: listeners, inbound connections, admission, AUTH;
//   - the spool (SpoolStore + SpoolWriter's group-commit thread), whose
//     completions the worker routes back to the client that submitted each
//     write (the inbound server or the queue manager);
//   - QueueManager (scheduling, retries, DSNs) delivering through
//     OutboundTransport;
//   - the probes that turn their events into metrics and log lines.
// Configuration arrives from posternd as versions; each becomes an
// immutable PolicySnapshot, installed whole or refused whole.
//
// Threading: everything here runs on the loop thread, except the spool
// writer's and the AUTH verifier's own threads, which talk back only through
// their eventfds.
#ifndef POSTERN_ENGINE_WORKER_WORKER_H_
#define POSTERN_ENGINE_WORKER_WORKER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/ipc_framing.h"
#include "common/metric_region.h"
#include "engine/inbound/inbound_probe.h"
#include "engine/inbound/inbound_server.h"
#include "engine/net/io_ring.h"
#include "engine/net/method_op.h"
#include "engine/outbound/outbound_probe.h"
#include "engine/outbound/outbound_transport.h"
#include "engine/worker/policy_snapshot.h"
#include "engine/worker/queue_probe.h"
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

  // Applies the first setup: opens the spool (adopting orphan shards) and
  // the listeners. An error means the worker cannot serve (e.g. the address
  // is in use).
  absl::Status Init(const ipc::v1::WorkerSetup& setup);

  // Runs the loop until drained. Returns the loop's failure, if any.
  absl::Status Run();

 private:
  // A later configuration version: built into a snapshot, then installed.
  absl::Status ApplyConfig(const ipc::v1::WorkerSetup& setup);
  void Install(std::shared_ptr<const PolicySnapshot> snapshot);
  void AdoptShards(const ipc::v1::WorkerSetup& setup);
  void OnTick(int res, uint32_t flags);
  void OnSpoolEvent(int res, uint32_t flags);
  void OnIpc(int res, uint32_t flags);
  void HandleIpcMessage(const ipc::v1::SupervisorToWorker& msg);
  void StartDrain(int64_t deadline_ms);
  void SendToSupervisor(const ipc::v1::WorkerToSupervisor& msg);
  void UpdateQueueGauges();

  int ipc_fd_;
  std::unique_ptr<metrics::MetricRegion> metrics_;
  IoRing ring_;
  uint32_t shard_ = 0;
  std::shared_ptr<const PolicySnapshot> snapshot_;
  std::string ticket_key_;
  InboundProbe inbound_probe_{metrics_.get()};
  OutboundProbe outbound_probe_{metrics_.get()};
  QueueProbe queue_probe_{metrics_.get()};
  std::unique_ptr<queue::SpoolStore> store_;
  std::unique_ptr<queue::SpoolWriter> writer_;
  std::unique_ptr<queue::QueueIdGenerator> ids_;
  std::unique_ptr<InboundServer> inbound_;
  std::unique_ptr<OutboundTransport> transport_;
  std::unique_ptr<queue::QueueManager> queue_;
  MethodOp<Worker> tick_op_{this, &Worker::OnTick};
  __kernel_timespec tick_ts_{};
  MethodOp<Worker> spool_op_{this, &Worker::OnSpoolEvent};
  uint64_t spool_event_value_ = 0;
  MethodOp<Worker> ipc_op_{this, &Worker::OnIpc};
  ipc::FrameReader ipc_reader_;
  bool draining_ = false;
  int64_t drain_deadline_ms_ = 0;
  bool done_ = false;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_WORKER_WORKER_H_
