// Supervisor: posternd's process manager. Starts one postern-worker per
// shard, hands each its setup over a socketpair, restarts workers that die
// (with exponential backoff, counted in worker_restarts_total), pushes new
// configuration on SIGHUP, and drains the node on SIGTERM/SIGINT.
//
// Queue administration: gRPC threads call Forward() (QueueForwarder); it
// queues the WorkerQueueRequests in an outbox and wakes the main loop through
// an eventfd, since only the main thread writes to the workers' sockets (a
// frame written from two threads could interleave). The main loop sends
// them, hands each WorkerQueueReply to the waiting caller by request_id, and
// fails the requests of a worker that exits (its loop lost them) with
// kUnavailable. Shard k's spool is served by worker k mod N (adopted when
// k >= N, WorkerSetup.adopted_shards).
//
// Threading: Run() is the main thread's loop. The metrics HTTP thread reads
// only ready() and the metric regions, both safe to read concurrently; the
// gRPC threads call Status() and the QueueForwarder methods.
#ifndef POSTERN_CONTROL_SUPERVISOR_H_
#define POSTERN_CONTROL_SUPERVISOR_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/ipc_framing.h"
#include "common/metric_region.h"
#include "control/admin_service.h"
#include "proto/admin.pb.h"
#include "proto/config.pb.h"
#include "proto/queue_admin.pb.h"
#include "proto/worker_ipc.pb.h"

namespace postern::control {

struct SupervisorOptions {
  std::string worker_binary;
  uint32_t workers = 1;
  // Re-reads the configuration (SIGHUP). Empty: SIGHUP only logs.
  std::function<absl::StatusOr<config::v1::Config>()> reload;
  // If set, SIGHUP calls this instead of `reload` (on the main thread); it
  // hands the new configuration over with SubmitConfig(). posternd uses it
  // to merge the file with the policy store.
  std::function<void()> on_reload;
};

class Supervisor final : public QueueForwarder, public ConfigSink {
 public:
  Supervisor(config::v1::Config config, SupervisorOptions options);
  ~Supervisor() override;
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Creates the metric regions (before the HTTP server starts reading them).
  absl::Status Prepare();

  // Starts the workers and supervises until a drain completes. Blocks the
  // signals it handles; call from the main thread before other threads start.
  absl::Status Run();

  // For the HTTP and gRPC threads.
  bool ready() const;
  std::vector<const metrics::MetricRegion*> regions() const;
  admin::v1::GetStatusResponse Status() const ABSL_LOCKS_EXCLUDED(status_mu_);

  // QueueForwarder, for the gRPC threads (valid after Prepare()).
  uint32_t worker_count() const override { return options_.workers; }
  uint32_t WorkerForShard(uint32_t shard) const override;
  std::vector<absl::StatusOr<queue::v1::QueueReply>> Forward(const std::vector<Call>& calls,
                                                             absl::Duration timeout) override
      ABSL_LOCKS_EXCLUDED(queue_mu_);

  // ConfigSink, for any thread.
  void SubmitConfig(config::v1::Config config, uint64_t generation) override
      ABSL_LOCKS_EXCLUDED(submit_mu_);
  admin::v1::Rollout WaitForConfig(uint64_t generation, absl::Duration timeout) override
      ABSL_LOCKS_EXCLUDED(status_mu_);

  // Shard directories in <data_dir>/spool/ that no worker owns (k >= N),
  // each given to worker k mod N: the adopted_shards of `worker`'s setup.
  static std::vector<uint32_t> AdoptedShards(const std::string& data_dir, uint32_t workers,
                                             uint32_t worker);

 private:
  struct Worker;

  absl::Status Spawn(Worker* w);
  void SendSetup(Worker* w, bool reconfigure);
  void OnWorkerReadable(Worker* w);
  void OnChildExit(pid_t pid, int status);
  void StartDrain();
  void Reload();
  // Main thread: sends a configuration SubmitConfig() left, if newer.
  void ApplySubmittedConfig() ABSL_LOCKS_EXCLUDED(submit_mu_);
  // Main thread: config_ as the next version, to every running worker.
  void SendNewConfig();
  void RotateTicketKey();
  // Copies the main thread's view of the workers for Status().
  void PublishStatus() ABSL_LOCKS_EXCLUDED(status_mu_);

  // Main thread: sends the queued queue requests to their workers.
  void FlushQueueOutbox() ABSL_LOCKS_EXCLUDED(queue_mu_);
  // Main thread: a worker's answer.
  void CompleteQueueRequest(uint32_t worker, ipc::v1::WorkerQueueReply reply)
      ABSL_LOCKS_EXCLUDED(queue_mu_);
  // Main thread: fails every request waiting on `worker` (all when it is
  // kAllWorkers) with kUnavailable `why`.
  static constexpr uint32_t kAllWorkers = ~0u;
  void FailQueueRequests(uint32_t worker, const std::string& why) ABSL_LOCKS_EXCLUDED(queue_mu_);
  void FailQueueRequestsLocked(uint32_t worker, const std::string& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_);

  config::v1::Config config_;
  SupervisorOptions options_;
  uint64_t config_version_ = 1;
  std::string ticket_key_;
  int64_t ticket_key_rotated_ms_ = 0;
  std::vector<std::unique_ptr<Worker>> workers_;
  bool draining_ = false;
  int64_t drain_deadline_ms_ = 0;

  mutable absl::Mutex status_mu_;
  mutable absl::CondVar status_changed_;
  admin::v1::GetStatusResponse status_ ABSL_GUARDED_BY(status_mu_);
  // The generation of the configuration in status_ (0: none submitted yet).
  uint64_t status_generation_ ABSL_GUARDED_BY(status_mu_) = 0;

  // Configurations from SubmitConfig(), newest generation only.
  absl::Mutex submit_mu_;
  uint64_t submitted_generation_ ABSL_GUARDED_BY(submit_mu_) = 0;
  std::unique_ptr<config::v1::Config> submitted_ ABSL_GUARDED_BY(submit_mu_);
  uint64_t applied_generation_ = 0;  // main thread

  // Queue requests between the gRPC threads and the main loop.
  struct OutgoingQueueRequest {
    uint32_t worker = 0;
    uint64_t request_id = 0;
    std::string frame;  // serialized SupervisorToWorker
  };
  struct PendingQueueRequest {
    uint32_t worker = 0;
    bool sent = false;  // written to the worker (it may answer)
    bool done = false;
    absl::StatusOr<queue::v1::QueueReply> result;
  };
  int wake_fd_ = -1;  // eventfd: the outbox has requests for the main loop
  absl::Mutex queue_mu_;
  absl::CondVar queue_done_;  // signalled when any pending request is done
  uint64_t next_request_id_ ABSL_GUARDED_BY(queue_mu_) = 1;
  bool stopped_ ABSL_GUARDED_BY(queue_mu_) = false;  // Run() returned
  std::deque<OutgoingQueueRequest> outbox_ ABSL_GUARDED_BY(queue_mu_);
  std::map<uint64_t, PendingQueueRequest> pending_ ABSL_GUARDED_BY(queue_mu_);
};

}  // namespace postern::control

#endif  // POSTERN_CONTROL_SUPERVISOR_H_
