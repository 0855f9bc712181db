// AdminService: the gRPC admin API (proto/admin.proto) served by posternd on
// the unix socket <data_dir>/admin.sock. The socket file is mode 0600, so only
// the node's own user can manage it; the TCP listener with mTLS comes with the
// cluster work.
//
// Queue administration is answered by the workers (only a shard's own loop
// knows which of its messages are in delivery): the service turns each RPC
// into WorkerQueueRequests through a QueueForwarder (the Supervisor), routes
// a queue id to the worker serving its shard, fans ListQueue out to every
// worker and merges the pages in id order.
#ifndef POSTERN_CONTROL_ADMIN_SERVICE_H_
#define POSTERN_CONTROL_ADMIN_SERVICE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/admin.grpc.pb.h"
#include "proto/config.pb.h"
#include "proto/queue_admin.pb.h"

namespace grpc {
class Server;
class Service;
}  // namespace grpc

namespace postern::control {

// How the admin API reaches the workers' queues. Implemented by Supervisor;
// tests substitute a fake. Every method is called on gRPC threads and must be
// thread-safe.
class QueueForwarder {
 public:
  struct Call {
    uint32_t worker = 0;  // index of the worker, < worker_count()
    queue::v1::QueueRequest request;
  };

  virtual ~QueueForwarder() = default;

  virtual uint32_t worker_count() const = 0;
  // The worker whose spool holds `shard` (its own, or one it adopted).
  virtual uint32_t WorkerForShard(uint32_t shard) const = 0;
  // Sends every call to its worker and waits until all are answered or
  // `timeout` has passed. One result per call, in order: the worker's reply,
  // or kUnavailable when the worker is not running, restarted before it
  // answered, or did not answer in time.
  virtual std::vector<absl::StatusOr<queue::v1::QueueReply>> Forward(const std::vector<Call>& calls,
                                                                     absl::Duration timeout) = 0;
};

// How the policy API hands a new configuration to the workers. Implemented
// by Supervisor; thread-safe.
class ConfigSink {
 public:
  virtual ~ConfigSink() = default;
  // Sends `config` to the workers as a new configuration version, unless a
  // later `generation` was submitted already (the newest wins; generations
  // start at 1). Returns at once; the main loop sends it.
  virtual void SubmitConfig(config::v1::Config config, uint64_t generation) = 0;
  // Waits until every running worker applied or refused the version that
  // carries `generation` (or a later one), at most `timeout`; then answers
  // each worker's state (PENDING for those that did not answer yet).
  virtual admin::v1::Rollout WaitForConfig(uint64_t generation, absl::Duration timeout) = 0;
};

// The shard part of a queue id (its last two hex digits, queue/queue_id.h);
// InvalidArgument when `queue_id` is not a valid id.
absl::StatusOr<uint32_t> ShardOfQueueId(const std::string& queue_id);

class AdminService final : public admin::v1::Admin::Service {
 public:
  // How long a queue RPC waits for the workers (less if the client's
  // deadline is nearer).
  static constexpr absl::Duration kQueueTimeout = absl::Seconds(10);

  // `status` is called on gRPC threads; it must be thread-safe. `queue` is
  // borrowed and must outlive the service; null: the queue RPCs answer
  // UNIMPLEMENTED.
  explicit AdminService(std::function<admin::v1::GetStatusResponse()> status,
                        QueueForwarder* queue = nullptr);

  grpc::Status GetStatus(grpc::ServerContext* context, const admin::v1::GetStatusRequest* request,
                         admin::v1::GetStatusResponse* response) override;

  // INVALID_ARGUMENT for a malformed after_queue_id; UNAVAILABLE when any
  // worker cannot answer (a partial listing would hide mail silently).
  grpc::Status ListQueue(grpc::ServerContext* context, const queue::v1::ListRequest* request,
                         queue::v1::ListReply* response) override;
  // INVALID_ARGUMENT for a malformed id, NOT_FOUND for an unknown one.
  grpc::Status ShowMessage(grpc::ServerContext* context, const queue::v1::ShowRequest* request,
                           queue::v1::ShowReply* response) override;
  // One result per requested id, in request order; a worker that cannot
  // answer fails only the results of its ids. INVALID_ARGUMENT without an
  // action or ids.
  grpc::Status QueueAction(grpc::ServerContext* context, const queue::v1::ActionRequest* request,
                           queue::v1::ActionReply* response) override;

 private:
  // kQueueTimeout, or less when the client's deadline comes first.
  static absl::Duration Timeout(const grpc::ServerContext* context);

  std::function<admin::v1::GetStatusResponse()> status_;
  QueueForwarder* const queue_;
};

// Owns the gRPC server listening on a unix socket.
class AdminServer {
 public:
  // Arguments as for AdminService.
  explicit AdminServer(std::function<admin::v1::GetStatusResponse()> status,
                       QueueForwarder* queue = nullptr);
  ~AdminServer();
  // Serves `service` (borrowed, must outlive the server) too; before Start().
  void AddService(grpc::Service* service) { extra_services_.push_back(service); }
  absl::Status Start(const std::string& socket_path);
  void Stop();

 private:
  AdminService service_;
  std::vector<grpc::Service*> extra_services_;
  std::unique_ptr<grpc::Server> server_;
  std::string socket_path_;
};

}  // namespace postern::control

#endif  // POSTERN_CONTROL_ADMIN_SERVICE_H_
