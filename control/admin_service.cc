#include "control/admin_service.h"

#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "queue/queue_admin.h"
#include "queue/queue_id.h"

namespace postern::control {
namespace {

grpc::Status Unavailable(const absl::Status& s) {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, std::string(s.message()));
}

// Whether a process accepts connections on the unix socket at `path`.
bool SomeoneListens(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) return false;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool live = connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return live;
}

}  // namespace

absl::StatusOr<uint32_t> ShardOfQueueId(const std::string& queue_id) {
  int64_t micros = 0;
  uint32_t shard = 0;
  if (!queue::QueueIdGenerator::Parse(queue_id, &micros, &shard)) {
    return absl::InvalidArgumentError(absl::StrCat("not a queue id: \"", queue_id, "\""));
  }
  return shard;
}

AdminService::AdminService(std::function<admin::v1::GetStatusResponse()> status,
                           QueueForwarder* queue)
    : status_(std::move(status)), queue_(queue) {}

grpc::Status AdminService::GetStatus(grpc::ServerContext*, const admin::v1::GetStatusRequest*,
                                     admin::v1::GetStatusResponse* response) {
  *response = status_();
  return grpc::Status::OK;
}

absl::Duration AdminService::Timeout(const grpc::ServerContext* context) {
  absl::Duration timeout = kQueueTimeout;
  if (context != nullptr) {
    // A client without a deadline has one at the end of time; the subtraction
    // would overflow, hence the comparison in time points first.
    auto deadline = context->deadline();
    auto now = std::chrono::system_clock::now();
    if (deadline < now + absl::ToChronoSeconds(kQueueTimeout)) {
      timeout = absl::FromChrono(deadline - now);
    }
  }
  return timeout;
}

grpc::Status AdminService::ListQueue(grpc::ServerContext* context,
                                     const queue::v1::ListRequest* request,
                                     queue::v1::ListReply* response) {
  if (queue_ == nullptr) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no queue access");
  if (!request->after_queue_id().empty() && !ShardOfQueueId(request->after_queue_id()).ok()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        std::string(ShardOfQueueId(request->after_queue_id()).status().message()));
  }
  std::vector<QueueForwarder::Call> calls(queue_->worker_count());
  for (uint32_t i = 0; i < calls.size(); ++i) {
    calls[i].worker = i;
    *calls[i].request.mutable_list() = *request;
  }
  auto replies = queue_->Forward(calls, Timeout(context));
  std::vector<queue::v1::ListReply> pages;
  for (size_t i = 0; i < replies.size(); ++i) {
    if (!replies[i].ok()) return Unavailable(replies[i].status());
    if (!replies[i]->error().empty()) {
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          absl::StrCat("worker ", i, ": ", replies[i]->error()));
    }
    pages.push_back(std::move(*replies[i]->mutable_list()));
  }
  *response = queue::MergeListPages(std::move(pages), request->limit());
  return grpc::Status::OK;
}

grpc::Status AdminService::ShowMessage(grpc::ServerContext* context,
                                       const queue::v1::ShowRequest* request,
                                       queue::v1::ShowReply* response) {
  if (queue_ == nullptr) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no queue access");
  auto shard = ShardOfQueueId(request->queue_id());
  if (!shard.ok()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(shard.status().message()));
  }
  QueueForwarder::Call call;
  call.worker = queue_->WorkerForShard(*shard);
  *call.request.mutable_show() = *request;
  auto replies = queue_->Forward({call}, Timeout(context));
  if (!replies[0].ok()) return Unavailable(replies[0].status());
  const std::string& error = replies[0]->error();
  if (error == "not found") {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat(request->queue_id(), ": not found"));
  }
  if (!error.empty()) return grpc::Status(grpc::StatusCode::INTERNAL, error);
  *response = std::move(*replies[0]->mutable_show());
  return grpc::Status::OK;
}

grpc::Status AdminService::QueueAction(grpc::ServerContext* context,
                                       const queue::v1::ActionRequest* request,
                                       queue::v1::ActionReply* response) {
  if (queue_ == nullptr) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no queue access");
  if (request->action() == queue::v1::QUEUE_ACTION_UNSPECIFIED ||
      !queue::v1::QueueAction_IsValid(request->action())) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no queue action given");
  }
  if (request->queue_ids().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no queue ids given");
  }
  response->Clear();
  // One ActionRequest per worker; `slots[w][k]` is the position in the
  // reply of the k-th id sent to call w.
  std::vector<QueueForwarder::Call> calls;
  std::vector<std::vector<int>> slots;
  std::vector<int> call_of_worker(queue_->worker_count(), -1);
  for (const std::string& id : request->queue_ids()) {
    queue::v1::ActionResult* result = response->add_results();
    result->set_queue_id(id);
    auto shard = ShardOfQueueId(id);
    if (!shard.ok()) {
      result->set_error("not a queue id");
      continue;
    }
    const uint32_t worker = queue_->WorkerForShard(*shard);
    int& c = call_of_worker[worker];
    if (c < 0) {
      c = static_cast<int>(calls.size());
      calls.emplace_back();
      calls.back().worker = worker;
      calls.back().request.mutable_action()->set_action(request->action());
      slots.emplace_back();
    }
    calls[c].request.mutable_action()->add_queue_ids(id);
    slots[c].push_back(response->results_size() - 1);
  }
  if (calls.empty()) return grpc::Status::OK;
  auto replies = queue_->Forward(calls, Timeout(context));
  for (size_t c = 0; c < calls.size(); ++c) {
    std::string call_error;
    if (!replies[c].ok()) {
      call_error = std::string(replies[c].status().message());
    } else if (!replies[c]->error().empty()) {
      call_error = replies[c]->error();
    }
    static const queue::v1::ActionReply* const kNone = new queue::v1::ActionReply();
    const auto& results = (replies[c].ok() ? replies[c]->action() : *kNone).results();
    for (size_t k = 0; k < slots[c].size(); ++k) {
      queue::v1::ActionResult* out = response->mutable_results(slots[c][k]);
      // The worker answers its ids in the order it was given them; anything
      // else (an older worker, a bug) is reported rather than misattributed.
      if (call_error.empty() && k < static_cast<size_t>(results.size()) &&
          results[static_cast<int>(k)].queue_id() == out->queue_id()) {
        *out = results[static_cast<int>(k)];
      } else {
        out->set_ok(false);
        out->set_error(call_error.empty() ? "no answer from the worker" : call_error);
      }
    }
  }
  return grpc::Status::OK;
}

AdminServer::AdminServer(std::function<admin::v1::GetStatusResponse()> status,
                         QueueForwarder* queue)
    : service_(std::move(status), queue) {}

AdminServer::~AdminServer() { Stop(); }

absl::Status AdminServer::Start(const std::string& socket_path) {
  // A stale socket from a crashed run would make the bind fail; a live one
  // belongs to another node (control.admin_socket outside the data dir, which
  // the data dir lock does not cover) and is not taken from it.
  if (SomeoneListens(socket_path)) {
    return absl::FailedPreconditionError("admin socket " + socket_path +
                                         " is in use by another process");
  }
  unlink(socket_path.c_str());
  // Create the socket owner-only from the start: no window in which another
  // user could connect.
  mode_t old = umask(0077);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + socket_path, grpc::InsecureServerCredentials());
  builder.RegisterService(&service_);
  for (grpc::Service* s : extra_services_) builder.RegisterService(s);
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
