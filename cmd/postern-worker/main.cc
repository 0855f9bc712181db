// postern-worker: one shard of a node. Started by posternd, never by hand:
// it inherits the IPC socketpair and its metrics region as file descriptors,
// reads its WorkerSetup, serves until told to drain, and exits.
//
// Links liburing, RocksDB (and BoringSSL for TLS) but never gRPC: see
// docs/DESIGN.md ("Processes") for the OpenSSL/BoringSSL split.
#include <sys/prctl.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "common/ipc_framing.h"
#include "common/log.h"
#include "common/metric_region.h"
#include "engine/worker/worker.h"
#include "proto/worker_ipc.pb.h"

namespace {

int FlagFd(int argc, char** argv, std::string_view name) {
  std::string prefix = "--" + std::string(name) + "=";
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a.substr(0, prefix.size()) == prefix) return std::atoi(argv[i] + prefix.size());
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  int ipc_fd = FlagFd(argc, argv, "ipc-fd");
  int metrics_fd = FlagFd(argc, argv, "metrics-fd");
  if (ipc_fd < 0 || metrics_fd < 0) {
    std::fprintf(stderr, "usage: postern-worker --ipc-fd=N --metrics-fd=N (started by posternd)\n");
    return 2;
  }
  // Die with the supervisor instead of serving unsupervised; SIGINT from a
  // terminal's Ctrl-C goes to the whole process group, and posternd decides
  // how workers drain, so the worker ignores it.
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  signal(SIGINT, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);

  auto frame = postern::ipc::ReadFrame(ipc_fd);
  if (!frame.ok()) {
    std::fprintf(stderr, "postern-worker: no setup from posternd: %s\n",
                 std::string(frame.status().message()).c_str());
    return 2;
  }
  postern::ipc::v1::SupervisorToWorker first;
  if (!first.ParseFromString(*frame) || !first.has_setup()) {
    std::fprintf(stderr, "postern-worker: the first IPC message is not a setup\n");
    return 2;
  }
  const auto& setup = first.setup();
  postern::log::SetProcessFields("proc=worker shard=" + std::to_string(setup.shard()) +
                                 " pid=" + std::to_string(getpid()));

  auto region = postern::metrics::MetricRegion::Attach(metrics_fd);
  if (!region.ok()) {
    postern::log::LogEvent("metrics_attach_failed", postern::log::Level::kError)
        .Add("error", std::string(region.status().message()))
        .Emit();
    return 2;
  }
  postern::engine::Worker worker(ipc_fd, std::move(*region));
  absl::Status st = worker.Init(setup);
  if (!st.ok()) {
    postern::log::LogEvent("worker_init_failed", postern::log::Level::kError)
        .Add("error", std::string(st.message()))
        .Emit();
    return 3;
  }
  st = worker.Run();
  if (!st.ok()) {
    postern::log::LogEvent("worker_loop_failed", postern::log::Level::kError)
        .Add("error", std::string(st.message()))
        .Emit();
    return 4;
  }
  return 0;
}
