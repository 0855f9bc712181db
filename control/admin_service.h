// AdminService: the gRPC admin API (proto/admin.proto) served by posternd on
// the unix socket <data_dir>/admin.sock. The socket file is mode 0600, so only
// the node's own user can manage it; the TCP listener with mTLS comes with the
// cluster work.
#ifndef POSTERN_CONTROL_ADMIN_SERVICE_H_
#define POSTERN_CONTROL_ADMIN_SERVICE_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "proto/admin.grpc.pb.h"

namespace grpc {
class Server;
}

namespace postern::control {

class AdminService final : public admin::v1::Admin::Service {
 public:
  // `status` is called on gRPC threads; it must be thread-safe.
  explicit AdminService(std::function<admin::v1::GetStatusResponse()> status);

  grpc::Status GetStatus(grpc::ServerContext* context, const admin::v1::GetStatusRequest* request,
                         admin::v1::GetStatusResponse* response) override;

 private:
  std::function<admin::v1::GetStatusResponse()> status_;
};

// Owns the gRPC server listening on a unix socket.
class AdminServer {
 public:
  explicit AdminServer(std::function<admin::v1::GetStatusResponse()> status);
  ~AdminServer();
  absl::Status Start(const std::string& socket_path);
  void Stop();

 private:
  AdminService service_;
  std::unique_ptr<grpc::Server> server_;
  std::string socket_path_;
};

}  // namespace postern::control

#endif  // POSTERN_CONTROL_ADMIN_SERVICE_H_
