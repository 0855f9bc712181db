#include "control/admin_service.h"

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

namespace postern::control {

AdminService::AdminService(std::function<admin::v1::GetStatusResponse()> status)
    : status_(std::move(status)) {}

grpc::Status AdminService::GetStatus(grpc::ServerContext*, const admin::v1::GetStatusRequest*,
                                     admin::v1::GetStatusResponse* response) {
  *response = status_();
  return grpc::Status::OK;
}

AdminServer::AdminServer(std::function<admin::v1::GetStatusResponse()> status)
    : service_(std::move(status)) {}

AdminServer::~AdminServer() { Stop(); }

absl::Status AdminServer::Start(const std::string& socket_path) {
  // A stale socket from a crashed run would make the bind fail.
  unlink(socket_path.c_str());
  // Create the socket owner-only from the start: no window in which another
  // user could connect.
  mode_t old = umask(0077);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + socket_path, grpc::InsecureServerCredentials());
  builder.RegisterService(&service_);
  server_ = builder.BuildAndStart();
  umask(old);
  if (!server_) return absl::UnavailableError("cannot serve the admin API on " + socket_path);
  chmod(socket_path.c_str(), 0600);
  socket_path_ = socket_path;
  return absl::OkStatus();
}

void AdminServer::Stop() {
  if (server_) {
    server_->Shutdown();
    server_.reset();
    unlink(socket_path_.c_str());
  }
}

}  // namespace postern::control
