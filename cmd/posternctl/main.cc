// posternctl: the admin CLI, a thin client of the gRPC admin API.
//
//   posternctl [--server ADDR] [--json] status
//
// ADDR: "unix:/path/admin.sock" (default unix:./var/postern/admin.sock, the
// embedded defaults' data dir) or a plain path to the socket.
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "proto/admin.grpc.pb.h"

namespace {

namespace admin = postern::admin::v1;

int Usage() {
  std::fprintf(stderr, "usage: posternctl [--server ADDR] [--json] status\n");
  return 2;
}

std::string StateName(admin::WorkerState s) {
  switch (s) {
    case admin::WORKER_STATE_STARTING:
      return "starting";
    case admin::WORKER_STATE_READY:
      return "ready";
    case admin::WORKER_STATE_RESTARTING:
      return "restarting";
    case admin::WORKER_STATE_STOPPED:
      return "stopped";
    default:
      return "unknown";
  }
}

int Status(admin::Admin::Stub* stub, bool json) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  admin::GetStatusResponse resp;
  grpc::Status st = stub->GetStatus(&ctx, admin::GetStatusRequest(), &resp);
  if (!st.ok()) {
    std::fprintf(stderr, "posternctl: %s\n", st.error_message().c_str());
    return 1;
  }
  if (json) {
    std::string out;
    google::protobuf::util::JsonPrintOptions opts;
    opts.always_print_primitive_fields = true;
    (void)google::protobuf::util::MessageToJsonString(resp, &out, opts);
    std::printf("%s\n", out.c_str());
    return 0;
  }
  std::printf("node %s  config v%llu  %s%s\n", resp.node_name().c_str(),
              static_cast<unsigned long long>(resp.config_version()),
              resp.ready() ? "ready" : "not ready", resp.draining() ? " (draining)" : "");
  std::printf("%-6s %-8s %-11s %9s %9s %7s\n", "SHARD", "PID", "STATE", "RESTARTS", "SPOOLED",
              "CONFIG");
  for (const auto& w : resp.workers()) {
    std::printf("%-6u %-8u %-11s %9llu %9llu %7llu\n", w.shard(), w.pid(),
                StateName(w.state()).c_str(), static_cast<unsigned long long>(w.restarts()),
                static_cast<unsigned long long>(w.spool_messages()),
                static_cast<unsigned long long>(w.config_version()));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string server = "unix:./var/postern/admin.sock";
  bool json = false;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--server" && i + 1 < argc) {
      server = argv[++i];
    } else if (a.substr(0, 9) == "--server=") {
      server = std::string(a.substr(9));
    } else if (a == "--json") {
      json = true;
    } else if (!a.empty() && a[0] == '-') {
      return Usage();
    } else {
      args.emplace_back(a);
    }
  }
  if (server.find(':') == std::string::npos) server = "unix:" + server;
  auto channel = grpc::CreateChannel(server, grpc::InsecureChannelCredentials());
  auto stub = admin::Admin::NewStub(channel);
  if (args.size() == 1 && args[0] == "status") return Status(stub.get(), json);
  return Usage();
}
