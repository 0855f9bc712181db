// Supervisor: posternd's process manager. Starts one postern-worker per
// shard, hands each its setup over a socketpair, restarts workers that die
// (with exponential backoff, counted in worker_restarts_total), pushes new
// configuration on SIGHUP, and drains the node on SIGTERM/SIGINT.
//
// Threading: Run() is the main thread's loop. The metrics HTTP thread reads
// only ready() and the metric regions, both safe to read concurrently.
#ifndef POSTERN_CONTROL_SUPERVISOR_H_
#define POSTERN_CONTROL_SUPERVISOR_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/ipc_framing.h"
#include "common/metric_region.h"
#include "proto/admin.pb.h"
#include "proto/config.pb.h"

namespace postern::control {

struct SupervisorOptions {
  std::string worker_binary;
  uint32_t workers = 1;
  // Re-reads the configuration (SIGHUP). Empty: SIGHUP only logs.
  std::function<absl::StatusOr<config::v1::Config>()> reload;
};

class Supervisor {
 public:
  Supervisor(config::v1::Config config, SupervisorOptions options);
  ~Supervisor();
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

 private:
  struct Worker;

  absl::Status Spawn(Worker* w);
  void SendSetup(Worker* w, bool reconfigure);
  void OnWorkerReadable(Worker* w);
  void OnChildExit(pid_t pid, int status);
  void StartDrain();
  void Reload();
  void RotateTicketKey();
  // Copies the main thread's view of the workers for Status().
  void PublishStatus() ABSL_LOCKS_EXCLUDED(status_mu_);

  config::v1::Config config_;
  SupervisorOptions options_;
  uint64_t config_version_ = 1;
  std::string ticket_key_;
  int64_t ticket_key_rotated_ms_ = 0;
  std::vector<std::unique_ptr<Worker>> workers_;
  bool draining_ = false;
  int64_t drain_deadline_ms_ = 0;

  mutable absl::Mutex status_mu_;
  admin::v1::GetStatusResponse status_ ABSL_GUARDED_BY(status_mu_);
};

}  // namespace postern::control

#endif  // POSTERN_CONTROL_SUPERVISOR_H_
